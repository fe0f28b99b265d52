"""Does the file carry signed provenance? C2PA Content Credentials and plain camera metadata, shown beside the
score and never mixed into it.

    prov = provenance.read("photo.jpg")      # or bytes; never raises
    prov.state                               # none | valid | untrusted | invalid | error
    prov.summary                             # "Content credentials: signed by Adobe Inc. (...), says AI-generated"
    prov.to_dict()

Cameras, editors and generators embed C2PA manifests saying who signed the file, what made it and how it was
changed (actions such as ``c2pa.created``, ``c2pa.edited``; the IPTC *digital source type*, e.g.
``trainedAlgorithmicMedia`` = AI-generated). They are read with the official ``c2pa-python`` bindings
(``c2pa.Reader``; c2pa-rs underneath). The states, from the library's ``validation_state`` and
``validation_status`` codes:

* ``valid``: signature and content hashes check out and the signing certificate chains to a trust anchor.
  Anchors come only from ``DEEPFAKE_C2PA_TRUST_ANCHORS`` (a PEM bundle, e.g. the C2PA trust list); the library
  state is ``Trusted``.
* ``untrusted``: signature and content hashes check out, but the signing certificate is on no trust list this
  deployment knows (library state ``Valid``, usually with ``signingCredential.untrusted``). With no trust list
  configured -- the default -- *every* intact credential is ``untrusted``, real cameras' and Adobe's included:
  the signer's name is what its certificate says, not vouched for by anyone.
* ``invalid``: a manifest is there but does not verify (library state ``Invalid``): the pixels or the manifest
  were changed after signing (``assertion.dataHash.mismatch``, ``assertion.hashedURI.mismatch``), the signature
  does not match, the certificate is expired or revoked...
* ``none``: no manifest (``ManifestNotFound``), or a format the library does not read (WebM/MKV, BMP...).
  Stripping credentials is easy (any re-save or screenshot), so ``none`` is no evidence either way.
* ``error``: the file or its manifest could not be read (corrupt, too large, over the time limit): one line.

Credentials say who signed and what the signer claims, not whether the content is true.

Bounds: files over the engine's upload limit (``media.MAX_FILE_BYTES``) are refused before reading; the read runs
in the engine's decoder child process (``model.isolation``: memory limit, and at most ``TIMEOUT_S`` seconds, or
the decode time limit when shorter), in-process only when isolation is off (trusted files; no time limit then);
the manifest JSON is parsed only up to ``MAX_MANIFEST_JSON`` bytes; lists are cut to ``MAX_ACTIONS`` /
``MAX_INGREDIENTS`` / ``MAX_CODES`` items and every text to ``MAX_TEXT`` characters; remote manifests and OCSP
are never fetched (no network from the server). Every library exception becomes state ``error`` with one line.
"""
from __future__ import annotations

import dataclasses
import io
import json
import os
import re
from pathlib import Path
from typing import Any, Mapping

from model import media

STATES = ("none", "valid", "untrusted", "invalid", "error")
TRUST_ENV = "DEEPFAKE_C2PA_TRUST_ANCHORS"
TIMEOUT_S = 60.0
MAX_MANIFEST_JSON = 1_000_000  # bytes of manifest-store JSON parsed
MAX_ACTIONS = 20
MAX_INGREDIENTS = 10
MAX_CODES = 10
MAX_TEXT = 120
# Formats the C2PA reader gets, by our content sniffing (``media.sniff``); others are "none" without a read.
MIME = {"JPEG": "image/jpeg", "PNG": "image/png", "WebP": "image/webp", "TIFF": "image/tiff", "GIF": "image/gif",
        "MP4/MOV": "video/mp4", "AVI": "video/x-msvideo"}
IPTC = "http://cv.iptc.org/newscodes/digitalsourcetype/"
# IPTC digital source types (last path segment; C2PA's own http://c2pa.org/digitalsourcetype/ ones too) ->
# (plain words, AI-generated?). None: says nothing about AI either way.
SOURCE_TYPES: dict[str, tuple[str, bool | None]] = {
    "trainedAlgorithmicMedia": ("AI-generated", True),
    "compositeWithTrainedAlgorithmicMedia": ("partly AI-generated (composite with AI elements)", True),
    "trainedAlgorithmicData": ("AI-generated data", True),
    "algorithmicMedia": ("computer-generated (algorithmic, not trained AI)", False),
    "digitalCapture": ("captured by a camera", False),
    "computationalCapture": ("captured by a camera (computational photography)", False),
    "negativeFilm": ("scanned from film negative", False),
    "positiveFilm": ("scanned from film", False),
    "print": ("scanned from a print", False),
    "minorHumanEdits": ("captured, with minor human edits", False),
    "humanEdits": ("edited by a person", False),
    "digitalCreation": ("made by a person with digital tools", False),
    "digitalArt": ("made by a person with digital tools", False),
    "compositeCapture": ("composite of captured media", False),
    "compositeSynthetic": ("composite including synthetic elements", None),
    "composite": ("composite", None),
    "algorithmicallyEnhanced": ("algorithmically enhanced", None),
    "dataDrivenMedia": ("data-driven media", None),
    "screenCapture": ("screen capture", False),
    "virtualRecording": ("virtual recording", None),
    "empty": ("no source type", None),
}
# validation_status codes -> plain words, for the "invalid" line (the first one found wins, in this order)
FAILURES = (
    ("assertion.dataHash.mismatch", "the content was changed after signing"),
    ("assertion.bmffHash.mismatch", "the content was changed after signing"),
    ("assertion.boxesHash.mismatch", "the content was changed after signing"),
    ("assertion.hashedURI.mismatch", "the manifest was altered after signing"),
    ("claimSignature.mismatch", "the signature does not match"),
    ("signingCredential.revoked", "the signing certificate is revoked"),
    ("signingCredential.expired", "the signing certificate had expired"),
    ("signingCredential.invalid", "the signing certificate is malformed"),
)
TRUST_CODES = ("signingCredential.untrusted",)
EXIF_TAGS = {"camera_make": 0x010F, "camera_model": 0x0110, "software": 0x0131}
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2066-\u2069]+")


def clean(value: Any, limit: int = MAX_TEXT) -> str:
    """Untrusted text (from a manifest or EXIF) -> one short line: control / bidi characters become spaces,
    whitespace is collapsed, anything past ``limit`` characters is cut with an ellipsis. Non-strings: ""."""
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if not isinstance(value, (str, int, float)) or isinstance(value, bool):
        return ""
    text = " ".join(_CONTROL.sub(" ", str(value)).split())
    return text if len(text) <= limit else text[:limit - 1] + "…"


def one_line(text: Any) -> str:
    lines = str(text).strip().splitlines()
    return clean(lines[0] if lines else "", 200)


@dataclasses.dataclass(frozen=True)
class Provenance:
    """What a file says about its own origin. ``ai`` is "yes"/"no" only when an intact credential (state valid or
    untrusted) declares a digital source type; "" otherwise (no claim, or a claim that does not verify)."""

    state: str = "none"
    summary: str = "Content credentials: none"
    signer: str = ""  # organisation of the signing certificate (c2pa's signature_info.issuer), else its CN
    signer_cn: str = ""  # common name of the signing certificate
    signed_at: str = ""  # trusted timestamp, when the signer used a timestamp authority
    claim_generator: str = ""  # the software that wrote the manifest, e.g. "Adobe Firefly 2.0"
    actions: tuple[str, ...] = ()  # c2pa.created, c2pa.edited...
    digital_source_type: str = ""  # IPTC URI
    source_type: str = ""  # plain words for it, e.g. "AI-generated"
    ai: str = ""  # yes / no / ""
    ingredients: tuple[str, ...] = ()  # "title (relationship)"
    validation_state: str = ""  # the library's word: Trusted / Valid / Invalid
    validation_codes: tuple[str, ...] = ()  # the library's validation_status codes
    manifests: int = 0  # manifests in the store (the active one and its ingredients')
    camera_make: str = ""  # EXIF Make (images), plain metadata: unsigned, trivially edited
    camera_model: str = ""  # EXIF Model
    software: str = ""  # EXIF Software
    exif_error: str = ""  # why EXIF could not be read, when it could not

    def __post_init__(self):
        if self.state not in STATES:
            raise ValueError(f"provenance state must be one of {STATES}, got {self.state!r}")

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Provenance":
        """Rebuild from ``to_dict()`` (e.g. sent back by the decoder child): unknown keys are dropped, every value
        is re-cleaned and re-capped, a bad state becomes an error."""
        if not isinstance(d, Mapping):
            return failed("the reader sent garbage")
        kw: dict[str, Any] = {}
        caps = {"actions": MAX_ACTIONS, "ingredients": MAX_INGREDIENTS, "validation_codes": MAX_CODES}
        for f in dataclasses.fields(cls):
            if f.name not in d:
                continue
            v = d[f.name]
            if f.name in caps:
                kw[f.name] = tuple(clean(x) for x in (v if isinstance(v, list) else [])[:caps[f.name]])
            elif f.name == "manifests":
                kw[f.name] = v if isinstance(v, int) and not isinstance(v, bool) and v >= 0 else 0
            elif f.name == "summary":
                kw[f.name] = clean(v, 400)
            else:
                kw[f.name] = clean(v)
        if kw.get("state") not in STATES:
            return failed("the reader sent garbage")
        return cls(**kw)

    @property
    def exif_line(self) -> str:
        """'Camera: Canon EOS R5 · Software: Adobe Photoshop 25.0' from EXIF, or '' when there is none."""
        cam = " ".join(p for p in (self.camera_make, self.camera_model) if p)
        parts = ([f"Camera: {cam}"] if cam else []) + ([f"Software: {self.software}"] if self.software else [])
        return " · ".join(parts)


def failed(reason: str, **exif: str) -> Provenance:
    """State ``error`` with one line."""
    return Provenance(state="error", summary=f"Content credentials: could not be read ({one_line(reason)})", **exif)


# --------------------------------------------------------------------------- manifest store -> Provenance
def _source_type(uri: str) -> tuple[str, bool | None]:
    key = uri.rstrip("/").rsplit("/", 1)[-1]
    return SOURCE_TYPES.get(key, (f"source type {clean(key, 60)}" if key else "", None))


def _generator(m: Mapping) -> str:
    info = m.get("claim_generator_info")
    if isinstance(info, list) and info and isinstance(info[0], Mapping):
        return clean(" ".join(clean(info[0].get(k)) for k in ("name", "version") if clean(info[0].get(k))))
    return clean(m.get("claim_generator"))


def _actions(m: Mapping) -> list[Mapping]:
    out: list[Mapping] = []
    for a in m.get("assertions") if isinstance(m.get("assertions"), list) else []:
        if not (isinstance(a, Mapping) and isinstance(a.get("label"), str) and a["label"].startswith("c2pa.actions")):
            continue
        data = a.get("data")
        acts = data.get("actions") if isinstance(data, Mapping) else None
        out.extend(x for x in (acts if isinstance(acts, list) else []) if isinstance(x, Mapping))
        if len(out) >= 10 * MAX_ACTIONS:
            break
    return out


def _ingredient(i: Any) -> str:
    if not isinstance(i, Mapping):
        return ""
    title = clean(i.get("title"), 80) or "untitled"
    rel = clean(i.get("relationship"), 30)
    return f"{title} ({rel})" if rel else title


def from_store(store: Any, **exif: str) -> Provenance:
    """Map the library's manifest-store JSON (``Reader.json()``, parsed) to a Provenance. Hostile input is
    expected: every field is type-checked, cleaned and capped; a store without an active manifest is an error."""
    if not isinstance(store, Mapping):
        return failed("the manifest store is not a JSON object", **exif)
    manifests = store.get("manifests") if isinstance(store.get("manifests"), Mapping) else {}
    active = manifests.get(store.get("active_manifest")) if isinstance(store.get("active_manifest"), str) else None
    if not isinstance(active, Mapping):
        return failed("the manifest store names no active manifest", **exif)
    sig = active.get("signature_info") if isinstance(active.get("signature_info"), Mapping) else {}
    signer_cn = clean(sig.get("common_name"))
    signer = clean(sig.get("issuer")) or signer_cn
    acts = _actions(active)
    names = []
    for a in acts:
        n = clean(a.get("action"), 60)
        if n and n not in names:
            names.append(n)
    uris = [clean(a.get("digitalSourceType"), 200) for a in acts if clean(a.get("digitalSourceType"), 200)]
    typed = [(u, *_source_type(u)) for u in uris]
    pick = next((t for t in typed if t[2]), typed[0] if typed else ("", "", None))  # an AI claim wins
    uri, words, is_ai = pick
    ingredients = active.get("ingredients") if isinstance(active.get("ingredients"), list) else []
    status = store.get("validation_status") if isinstance(store.get("validation_status"), list) else []
    codes = [clean(s.get("code"), 80) for s in status if isinstance(s, Mapping) and clean(s.get("code"), 80)]
    vstate = clean(store.get("validation_state"), 20)
    if vstate == "Trusted":
        state = "valid"
    elif vstate == "Valid":
        state = "untrusted"
    else:  # "Invalid", or no state at all (an old or odd library answer): never more than invalid
        state = "invalid"
    ai = ("yes" if is_ai else "no" if is_ai is False else "") if state in ("valid", "untrusted") else ""
    who = signer or "an unnamed signer"
    if state == "invalid":
        bad = [c for c in codes if c not in TRUST_CODES]
        reason = next((w for code, w in FAILURES if code in bad), "")
        detail = ", ".join(bad[:3]) or vstate or "no validation state"
        summary = (f"Content credentials: present but invalid ({reason + ': ' if reason else ''}{detail}); "
                   f"claims to be signed by {who}")
    else:
        trust = "trusted signer" if state == "valid" else "signer not on a trust list"
        says = (f", says {words}" if words else
                f", records {', '.join(n.removeprefix('c2pa.') for n in names[:3])}" if names else "")
        summary = f"Content credentials: signed by {who} ({trust}){says}"
    return Provenance(
        state=state, summary=clean(summary, 400), signer=signer, signer_cn=signer_cn,
        signed_at=clean(sig.get("time"), 40), claim_generator=_generator(active), actions=tuple(names[:MAX_ACTIONS]),
        digital_source_type=uri, source_type=words, ai=ai,
        ingredients=tuple(s for s in (_ingredient(i) for i in ingredients[:MAX_INGREDIENTS]) if s),
        validation_state=vstate, validation_codes=tuple(codes[:MAX_CODES]), manifests=len(manifests), **exif)


# --------------------------------------------------------------------------- reading (in-process)
def exif_fields(data: bytes | None, path: str | None) -> dict[str, str]:
    """EXIF Make / Model / Software of an image (Pillow's ``getexif()``: the header only, no pixels decoded);
    ``exif_error`` says why when the EXIF block could not be read."""
    from PIL import Image

    try:  # Image.open reads the header only; a header past Pillow's bomb limit is an EXIF error like any other
        with Image.open(io.BytesIO(data) if data is not None else path, formats=media.PIL_FORMATS) as img:
            exif = img.getexif()
            return {k: clean(exif.get(tag)) for k, tag in EXIF_TAGS.items() if clean(exif.get(tag))}
    except Exception as e:  # any parser failure on a hostile header: recorded as one line, never raised
        return {"exif_error": f"EXIF unreadable ({one_line(e) or type(e).__name__})"}


def _context(trust: str | None):
    import c2pa

    settings: dict[str, Any] = {"verify": {"remote_manifest_fetch": False, "ocsp_fetch": False}}
    if trust:
        settings["trust"] = {"trust_anchors": Path(trust).read_text()}
    return c2pa.Context(c2pa.Settings.from_dict(settings))


def read_local(data: bytes | None, path: str | None, mime: str | None, kind: str, trust: str | None = None,
               max_json: int = MAX_MANIFEST_JSON) -> Provenance:
    """Read the credentials of ``data`` (bytes) or ``path`` in this process (the decoder child calls this).
    ``mime`` None: a format the C2PA reader is not given (state none). Never raises."""
    exif = exif_fields(data, path) if kind == "image" else {}
    if mime is None:
        return Provenance(summary="Content credentials: none (this file format is not read for them)", **exif)
    try:
        import c2pa
    except ImportError:
        return failed("the c2pa-python package is not installed", **exif)
    try:
        ctx = _context(trust)
    except (OSError, UnicodeDecodeError) as e:
        return failed(f"trust anchors {TRUST_ENV} unreadable: {type(e).__name__}", **exif)
    except c2pa.C2paError as e:
        return failed(f"trust anchors {TRUST_ENV} rejected: {one_line(e)}", **exif)
    try:
        with open(path, "rb") if data is None else io.BytesIO(data) as stream:
            with c2pa.Reader(mime, stream, context=ctx) as reader:
                text = reader.json()
    except c2pa.C2paError.ManifestNotFound:
        return Provenance(**exif)
    except c2pa.C2paError.NotSupported:
        return Provenance(summary="Content credentials: none (this file format is not read for them)", **exif)
    except c2pa.C2paError as e:
        return failed(one_line(e) or type(e).__name__, **exif)
    except (OSError, ValueError, MemoryError) as e:
        return failed(f"{type(e).__name__}: {one_line(e)}", **exif)
    if len(text) > max_json:
        return failed(f"manifest data of {len(text) / 1e6:.1f} MB is over the {max_json / 1e6:g} MB limit", **exif)
    try:
        store = json.loads(text)
    except ValueError:
        return failed("the manifest store is not valid JSON", **exif)
    return from_store(store, **exif)


# --------------------------------------------------------------------------- the entry point
def trust_anchors() -> str | None:
    """The PEM bundle of trust anchors (``$DEEPFAKE_C2PA_TRUST_ANCHORS``), or None: nothing is trusted."""
    v = os.environ.get(TRUST_ENV, "").strip()
    return v or None


def read(source: str | os.PathLike | bytes, lim=None) -> Provenance:
    """The content credentials and EXIF camera/software of a file (path or bytes). Never raises: every problem
    is state ``error`` with one line. Refuses files over the upload limit before reading; reads in the decoder
    child process unless isolation is off (``model.isolation.read_provenance``)."""
    from model import isolation, limits

    try:
        lim = lim or limits.current()
        if isinstance(source, (bytes, bytearray, memoryview)):
            if len(source) == 0:
                return failed("empty file (0 bytes)")
            if len(source) > media.MAX_FILE_BYTES:
                return failed(f"file too large ({len(source) / 1e9:.1f} GB)")
            head = bytes(source[:media.SNIFF_BYTES])
        else:
            with open(media.check_file(source), "rb") as f:
                head = f.read(media.SNIFF_BYTES)
        found = media.sniff(head)
        if found is None:
            return failed("not an image or video format we read")
        kind, fmt = found
        return isolation.read_provenance(source, MIME.get(fmt), kind, trust_anchors(), lim)
    except media.MediaError as e:
        return failed(str(e))
    except (OSError, ValueError) as e:
        return failed(f"{type(e).__name__}: {one_line(e)}")
