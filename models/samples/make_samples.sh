#!/usr/bin/env bash
# Rebuilds the bundled sample clips from text with speech synthesis; no recording of anyone is used.
# Needs Debian's flite, espeak-ng and sox:  apt install flite espeak-ng sox
# Output is deterministic for the same tool versions (sox dithering is switched off with -D).
set -euo pipefail
cd "$(dirname "$0")"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# flite voices: slt = female (US English), rms / awb = male.
flite -voice slt -t "Good morning. Could you tell me where the train station is, please?" -o "$tmp/slt1.wav"
flite -voice rms -t "The weather today is cloudy, with a little rain in the afternoon." -o "$tmp/rms1.wav"
flite -voice awb -t "Please take a ticket and wait until your number is called." -o "$tmp/awb1.wav"
flite -voice slt -t "Welcome to the museum. The next guided tour starts in ten minutes." -o "$tmp/slt2.wav"
# espeak-ng: a formant synthesiser, a different kind of voice from flite's (f3 = female variant).
espeak-ng -v en-us+f3 -s 150 -w "$tmp/esf.wav" "Thank you for visiting. Have a wonderful day and come back soon."

# Different rates and layouts, as real devices produce them. FLAC keeps the folder small.
sox -D "$tmp/slt1.wav" -b 16 female_16k.flac
sox -D "$tmp/rms1.wav" -b 16 male_16k.flac
sox -D "$tmp/awb1.wav" -b 16 male_48k.flac rate -v 48000
sox -D "$tmp/slt2.wav" -b 16 -c 2 female_44k_stereo.flac rate -v 44100
sox -D "$tmp/esf.wav" -b 16 female_espeak_22k.flac
# Background only: quiet pink noise, as in a room with nobody speaking (should give no_speech).
sox -R -D -n -r 16000 -b 16 room_noise_16k.flac synth 3 pinknoise vol 0.01

# A woman, a short pause, then a man (about 6 s each), for the streaming demo and tests. The woman is
# espeak-ng's: every shipped model calls flite's slt voice male (see README.md).
espeak-ng -v en-us+f3 -s 150 -w "$tmp/a22.wav" "Hello, my name is Sarah. I would like two tickets for the evening show, and a program, please."
sox -D "$tmp/a22.wav" -b 16 "$tmp/a.wav" rate -v 16000
flite -voice rms -t "Certainly. That will be twenty four dollars. The show starts at eight o'clock in hall number three." -o "$tmp/b.wav"
sox -D -n -r 16000 -c 1 "$tmp/pause.wav" trim 0 0.8
sox -D "$tmp/a.wav" "$tmp/pause.wav" "$tmp/b.wav" -b 16 two_speakers.wav

for f in ./*.wav ./*.flac; do printf '%-26s %6.2f s  %6s Hz  %s ch\n' "$f" "$(soxi -D "$f")" "$(soxi -r "$f")" "$(soxi -c "$f")"; done
du -ch ./*.wav ./*.flac | tail -1
