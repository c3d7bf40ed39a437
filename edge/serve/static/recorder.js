// Recording from the browser microphone, stopped by the user or, at the latest, at the time limit.

const TYPES = ["audio/webm;codecs=opus", "audio/ogg;codecs=opus", "audio/mp4", "audio/webm"];

function recordingType() {
  return TYPES.find((type) => MediaRecorder.isTypeSupported(type)) || "";
}

export function extensionFor(type) {
  if (type.startsWith("audio/ogg")) return ".ogg";
  if (type.startsWith("audio/mp4")) return ".m4a";
  return ".webm";
}

export function canRecord() {
  return Boolean(navigator.mediaDevices && navigator.mediaDevices.getUserMedia && window.MediaRecorder);
}

export class LimitedRecorder {
  // onTick(secondsLeft) while recording; onDone(blob) once, after a stop by hand or by the limit.
  constructor(maxSeconds, onTick, onDone) {
    this.maxSeconds = maxSeconds;
    this.onTick = onTick;
    this.onDone = onDone;
    this.recorder = null;
    this.timers = [];
  }

  get recording() {
    return this.recorder !== null && this.recorder.state === "recording";
  }

  async start() {
    const stream = await navigator.mediaDevices.getUserMedia({ audio: true });
    const type = recordingType();
    const recorder = new MediaRecorder(stream, type ? { mimeType: type } : undefined);
    const chunks = [];
    recorder.ondataavailable = (event) => { if (event.data.size) chunks.push(event.data); };
    recorder.onstop = () => {
      this.clearTimers();
      stream.getTracks().forEach((track) => track.stop());
      this.recorder = null;
      const mime = recorder.mimeType || type || "audio/webm";
      this.onDone(new Blob(chunks, { type: mime }), "recording" + extensionFor(mime));
    };
    this.recorder = recorder;
    recorder.start(250);
    const deadline = performance.now() + this.maxSeconds * 1000;
    const tick = () => this.onTick(Math.max(0, (deadline - performance.now()) / 1000));
    tick();
    this.timers.push(setInterval(tick, 200));
    this.timers.push(setTimeout(() => this.stop(), this.maxSeconds * 1000)); // the hard stop
  }

  stop() {
    if (this.recording) this.recorder.stop();
  }

  clearTimers() {
    this.timers.forEach((id) => { clearInterval(id); clearTimeout(id); });
    this.timers = [];
  }
}
