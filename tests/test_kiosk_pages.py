"""The kiosk and operator pages without a browser: security headers, favicon, string tables, language
choice, no inline script or style, and the API contract the page is written against.
"""

from __future__ import annotations

import re
from dataclasses import make_dataclass
from html.parser import HTMLParser
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

from fastapi.testclient import TestClient  # noqa: E402
from kiosk_browser import KioskServeOptions  # noqa: E402

from edge.serve.app import create_app  # noqa: E402
from edge.serve.pages import LANGUAGES, STATIC, PageOptions, choose_language, load_strings  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
SAMPLES = REPO / "models" / "samples"
TEMPLATES = ("head.html", "languages.html", "core.html", "kiosk.html", "operator.html")
SCRIPTS = sorted(p.name for p in Path(str(STATIC)).glob("*.js"))
# Keys the scripts build from a server value: "label_" + label, "reason_" + reason, "error_" + word.
DYNAMIC_PREFIXES = ("label_", "reason_", "error_")


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    return create_app(KioskServeOptions(feedback_dir=tmp_path_factory.mktemp("feedback"),
                                        kiosk_idle_seconds=45, kiosk_max_record_seconds=12))


@pytest.fixture(scope="module")
def client(app):
    with TestClient(app, base_url="http://127.0.0.1") as test_client:
        yield test_client


def asset(name: str) -> str:
    return STATIC.joinpath(name).read_text(encoding="utf-8")


# --- headers and favicon ---------------------------------------------------------------------------

@pytest.mark.parametrize("path", ["/", "/kiosk", "/static/app.js", "/favicon.ico", "/health", "/models"])
def test_every_response_carries_the_security_headers(client: TestClient, path: str):
    response = client.get(path)
    assert response.status_code == 200
    policy = response.headers["content-security-policy"]
    directives = dict(d.strip().split(" ", 1) for d in policy.split(";"))
    assert directives["script-src"] == "'self'"  # no inline script, no eval
    assert "unsafe" not in policy
    assert directives["frame-ancestors"] == "'none'"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "no-referrer"
    assert "microphone=(self)" in response.headers["permissions-policy"]


def test_error_answers_carry_the_headers_too(client: TestClient):
    response = client.post("/predict", content=b"not audio", headers={"content-type": "text/plain"})
    assert 400 <= response.status_code < 500
    assert "script-src 'self'" in response.headers["content-security-policy"]


def test_frame_ancestors_is_configurable(tmp_path: Path):
    framed_options = make_dataclass("FramedOptions", [("frame_ancestors", str, "https://signage.example")],
                                    bases=(KioskServeOptions,), frozen=True)
    with TestClient(create_app(framed_options(feedback_dir=tmp_path)), base_url="http://127.0.0.1") as framed:
        response = framed.get("/kiosk")
    assert "frame-ancestors https://signage.example" in response.headers["content-security-policy"]
    assert "x-frame-options" not in response.headers


def test_favicon_is_a_real_icon(client: TestClient):
    response = client.get("/favicon.ico")
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/x-icon"
    assert response.content[:4] == b"\x00\x00\x01\x00"  # the ICO header
    assert int.from_bytes(response.content[4:6], "little") >= 2  # several sizes


# --- pages: no inline script or style, nothing from outside, options reach the page -----------------

class _Markup(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.scripts: list[dict[str, str | None]] = []
        self.inline: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        if tag == "script":
            self.scripts.append(attributes)
        if tag == "style":
            self.inline.append("<style>")
        self.inline += [f"{tag} {name}" for name in attributes if name == "style" or name.startswith("on")]

    def handle_data(self, data):
        self.text.append(data)


@pytest.mark.parametrize("path", ["/", "/kiosk"])
@pytest.mark.parametrize("language", LANGUAGES)
def test_pages_have_no_inline_script_or_style(client: TestClient, path: str, language: str):
    page = client.get(path, params={"lang": language}).text
    markup = _Markup()
    markup.feed(page)
    assert markup.scripts and all(s.get("src", "").startswith("static/") for s in markup.scripts)
    assert markup.inline == []
    assert "${" not in page  # every placeholder filled


def test_assets_are_self_contained():
    # No CDN or any other outside resource: the page must work on an offline device.
    for path in Path(str(STATIC)).rglob("*"):
        if path.suffix in (".html", ".js", ".css", ".json"):
            text = path.read_text(encoding="utf-8")
            assert "http://" not in text and "https://" not in text and "//cdn" not in text, path.name


def test_page_uses_the_api(client: TestClient):
    scripts = "".join(asset(name) for name in SCRIPTS)
    for feature in ("MediaRecorder", "getUserMedia", '"predict', '"feedback"', '"models"', "consent: true"):
        assert feature in scripts


def test_kiosk_options_reach_the_page(client: TestClient):
    page = client.get("/kiosk").text
    assert 'data-idle-seconds="45"' in page and 'data-max-record-seconds="12"' in page


def test_bad_kiosk_options_are_refused_at_start():
    with pytest.raises(ValueError, match="default_language"):
        PageOptions(default_language="fr")
    with pytest.raises(ValueError, match="kiosk_max_record_seconds"):
        PageOptions(max_record_seconds=0)
    with pytest.raises(ValueError, match="frame_ancestors"):
        PageOptions(frame_ancestors="'self'; script-src *")
    allowed = "'self' https://signage.example:8443"
    assert PageOptions(frame_ancestors=allowed).frame_ancestors == allowed


# --- strings: one table per language, complete, used, nothing hard-coded ------------------------------

def test_tables_have_the_same_keys_and_placeholders():
    tables = {language: load_strings(language) for language in LANGUAGES}
    english = tables["en"]
    for language, table in tables.items():
        assert table.keys() == english.keys(), language
        for key, text in table.items():
            assert text.strip(), f"{language}.{key} is empty"
            assert set(re.findall(r"\{(\w+)\}", text)) == set(re.findall(r"\{(\w+)\}", english[key])), key
    different = [key for key in english if tables["id"][key] != english[key]]
    assert len(different) > 0.85 * len(english)  # translated, not copied (language names stay alike)


def test_every_string_is_used_and_every_used_string_exists():
    sources = "".join(asset(name) for name in TEMPLATES + tuple(SCRIPTS))
    table = load_strings("en")
    for key in table:
        used = f"${{t_{key}}}" in sources or f'"{key}"' in sources or key.startswith(DYNAMIC_PREFIXES)
        assert used, f"{key} is in the table but no page or script uses it"
    for name in SCRIPTS:
        for key in re.findall(r'\bt\("(\w+)"\s*[,)]', asset(name)):
            assert key in table, f"{name} uses {key!r}, missing from the tables"
    for name in TEMPLATES:
        for key in re.findall(r"\$\{t_(\w+)\}", asset(name)):
            assert key in table, f"{name} uses {key!r}, missing from the tables"
    for kind in ("female", "male", "no_speech", "mixed"):
        assert f"label_{kind}" in table
    for reason in ("too_short", "silence", "not_speech", "unknown"):
        assert f"reason_{reason}" in table
    for word in ("consent_required", "mixed_clip", "upload_too_large", "unknown_model", "network"):
        assert f"error_{word}" in table


@pytest.mark.parametrize("name", TEMPLATES)
def test_templates_hold_no_text_of_their_own(name: str):
    markup = _Markup()
    markup.feed(asset(name))
    leftover = re.sub(r"\$\{\w+\}", "", "".join(markup.text))
    assert re.sub(r"[\s·—–:()]", "", leftover) == "", f"hard-coded text in {name}: {leftover.strip()!r}"


# --- language choice ----------------------------------------------------------------------------------

@pytest.mark.parametrize("query, accept, default, expected", [
    ("id", "en-US,en;q=0.9", "en", "id"),          # ?lang= wins
    (None, "id-ID,id;q=0.9,en;q=0.8", "en", "id"),  # then the browser
    (None, "fr-FR,en;q=0.5,id;q=0.4", "id", "en"),  # its best known language by weight
    (None, "ms-MY", "en", "id"),                     # Malay readers get Indonesian
    (None, "fr", "id", "id"),                        # else the configured default
    ("xx", None, "en", "en"),                        # an unknown ?lang= is ignored
    (None, "en;q=bad,id", "en", "id"),               # a malformed weight is skipped
])
def test_choose_language(query, accept, default, expected):
    assert choose_language(query, accept, default) == expected


def test_pages_come_in_the_chosen_language(client: TestClient):
    strings = {language: load_strings(language) for language in LANGUAGES}
    page = client.get("/kiosk", headers={"accept-language": "id-ID,id;q=0.9"})
    assert '<html lang="id">' in page.text and strings["id"]["heading"] in page.text
    assert page.headers["vary"] == "Accept-Language"
    page = client.get("/kiosk?lang=en", headers={"accept-language": "id-ID"})
    assert '<html lang="en">' in page.text and strings["en"]["heading"].replace("'", "&#x27;") in page.text


# --- the API contract the page is written against (server rewrite) ------------------------------------

def test_models_is_the_list_of_choices(client: TestClient):
    models = client.get("/models").json()
    assert isinstance(models, list) and models
    assert {"name", "cell", "default", "loaded"} <= set(models[0])
    assert sum(m["default"] for m in models) == 1


def test_predict_uses_the_chosen_model(client: TestClient):
    with open(SAMPLES / "female_16k.flac", "rb") as handle:
        response = client.post("/predict?model=lstm", files={"file": ("f.flac", handle.read(), "audio/flac")})
    assert response.status_code == 200 and response.json()["model"] == "lstm"


def test_unknown_model_is_a_specific_error(client: TestClient):
    with open(SAMPLES / "female_16k.flac", "rb") as handle:
        response = client.post("/predict?model=nope", files={"file": ("f.flac", handle.read(), "audio/flac")})
    assert response.status_code in (400, 404, 422)
    assert response.json()["error"] == "unknown_model" and response.json()["message"]


def test_feedback_without_consent_stores_nothing(client: TestClient, app):
    with open(SAMPLES / "female_16k.flac", "rb") as handle:
        prediction = client.post("/predict", files={"file": ("f.flac", handle.read(), "audio/flac")}).json()
    response = client.post("/feedback", json={"prediction_id": prediction["prediction_id"], "correct_label": "female"})
    assert response.status_code == 422 and response.json()["error"] == "consent_required"
    assert client.get("/feedback").json()["rows"] == 0


def test_feedback_on_a_mixed_clip_is_refused(client: TestClient):
    with open(SAMPLES / "two_speakers.wav", "rb") as handle:
        prediction = client.post("/predict", files={"file": ("two.wav", handle.read(), "audio/wav")}).json()
    assert prediction["mixed"] is True
    response = client.post("/feedback", json={"prediction_id": prediction["prediction_id"],
                                              "correct_label": "male", "consent": True})
    assert response.status_code == 422 and response.json()["error"] == "mixed_clip"
