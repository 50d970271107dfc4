"""Bad input through the real API: the launched ``python app.py``, driven over HTTP.

The API can be called without the UI, so no slider or dropdown protects anything. Each
case below sends one kind of bad input (damaged, odd or huge images, out-of-range or
non-finite numbers, unknown names, wrong types) and asserts a clear message within
seconds; odd-but-valid images must work and say how they were converted. After every
case the same server must answer a normal attack correctly (its numbers echo the
request). Damaged checkpoints among good ones are named while the others keep serving.
NaN and infinity cannot pass through ``gradio_client`` (it sends strict JSON), so those
cases go over plain HTTP, as any other client could send them.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import httpx
import numpy as np
import pytest
import torch
from PIL import Image

from kwta_demo.models.checkpoints import write_manifest
from kwta_demo.testing import serve_app, write_image_folder, write_random_checkpoints

gradio_client = pytest.importorskip("gradio_client")
from gradio_client import Client, handle_file  # noqa: E402

pytestmark = [pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::FutureWarning"),
              pytest.mark.slow]

ROOT = Path(__file__).resolve().parent.parent
TIME_LIMIT_S = 4  # the server's per-request limit (--time-limit); normal requests take < 1 s
ANSWER_WITHIN_S = 6.0  # every bad request must be answered within this


# ---------------------------------------------------------------- images


def _png_bytes(img: Image.Image, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG", **kw)
    return buf.getvalue()


def _exif_rotated(path: Path) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    Image.new("RGB", (64, 32), (0, 200, 0)).save(path, format="JPEG", exif=exif.tobytes())


def _gif(path: Path) -> None:
    frames = [Image.new("RGB", (40, 40), colour) for colour in ((255, 0, 0), (0, 0, 255))]
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=50)


IMAGES: dict[str, Callable[[Path], None]] = {
    "good.png": lambda p: Image.fromarray(
        np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(p),
    "not-an-image.png": lambda p: p.write_bytes(b"GIF89a? no: just text that claims to be a picture"),
    "empty.png": lambda p: p.write_bytes(b""),
    "truncated.png": lambda p: p.write_bytes(_png_bytes(Image.fromarray(
        np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)))[:2000]),
    "rgba.png": lambda p: Image.new("RGBA", (40, 40), (255, 0, 0, 100)).save(p),
    "palette.png": lambda p: Image.new("RGB", (40, 40), (0, 0, 255)).convert("P").save(p, transparency=0),
    "gray.png": lambda p: Image.new("L", (40, 40), 90).save(p),
    "cmyk.jpg": lambda p: Image.new("CMYK", (40, 40), (0, 120, 0, 0)).save(p),
    "16bit.png": lambda p: Image.fromarray(np.full((40, 40), 40000, dtype=np.uint16)).save(p),
    "float.tiff": lambda p: Image.fromarray(np.full((40, 40), 0.25, dtype=np.float32)).save(p),
    "1x1.png": lambda p: Image.new("RGB", (1, 1), (10, 20, 30)).save(p),
    "exif.jpg": _exif_rotated,
    "animated.gif": _gif,
    # 10,000 x 10,000 = 100 megapixels in a few kB: must be refused before decoding.
    "bomb.png": lambda p: Image.new("1", (10_000, 10_000)).save(p),
    "over-25mb.png": lambda p: p.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(26 * 2**20)),
}


def _write_images(folder: Path) -> dict[str, Path]:
    folder.mkdir()
    for name, make in IMAGES.items():
        make(folder / name)
    return {name: folder / name for name in IMAGES}


# ---------------------------------------------------------------- the server


@dataclass
class Server:
    url: str
    root: Path
    process: subprocess.Popen
    log: Path
    images: dict[str, Path]  # the test pictures, by name (see IMAGES)

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]


def _damage_checkpoints(ckpt: Path) -> None:
    """Good AlexNet ReLU and k-WTA 0.1; a truncated AlexNet k-WTA 0.2; a ResNet18 ReLU whose
    weights do not fit; a ResNet18 k-WTA 0.1 whose bytes fail the checksum manifest."""
    write_random_checkpoints(ckpt, ["alexnet-relu", "alexnet-kwta-0.1"])
    for name in ("resnet18-relu", "resnet18-kwta-0.1"):
        shutil.copytree(ckpt / "alexnet-relu", ckpt / name)
        config = json.loads((ckpt / name / "config.json").read_text())
        if name == "resnet18-kwta-0.1":
            config.update(activation="kwta", gamma=0.1)
        (ckpt / name / "config.json").write_text(json.dumps({**config, "arch": "resnet18"}))
    write_manifest(ckpt)  # covers the four folders above, as shipped
    weights = ckpt / "resnet18-kwta-0.1" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF  # one flipped byte: only the checksum can tell
    weights.write_bytes(bytes(data))
    shutil.copytree(ckpt / "alexnet-relu", ckpt / "alexnet-kwta-0.2", ignore=shutil.ignore_patterns("*.safetensors"))
    good = (ckpt / "alexnet-relu" / "model.safetensors").read_bytes()
    (ckpt / "alexnet-kwta-0.2" / "model.safetensors").write_bytes(good[: len(good) // 3])


@pytest.fixture(scope="module")
def damaged_server(tmp_path_factory) -> Server:
    root = tmp_path_factory.mktemp("bad-input")
    _damage_checkpoints(root / "ckpt")
    write_image_folder(root / "data", per_class=1)
    args = ["--device", "cpu", "--checkpoints", str(root / "ckpt"), "--data", str(root / "data"),
            "--time-limit", str(TIME_LIMIT_S), "--threads", "1"]
    env = {"HF_HUB_DISABLE_TELEMETRY": "1", "GRADIO_TEMP_DIR": str(root / "gradio")}
    try:
        with serve_app(args, root, env=env, timeout=90) as app:
            yield Server(app.url, root, app.process, app.log, _write_images(root / "images"))
    except RuntimeError as e:
        pytest.fail(str(e))


@pytest.fixture(scope="module")
def client(damaged_server) -> Client:
    return Client(damaged_server.url, verbose=False, analytics_enabled=False,
                  download_files=str(damaged_server.root / "downloads"))


@pytest.fixture(scope="module")
def images(damaged_server) -> dict[str, Path]:
    return damaged_server.images


# ---------------------------------------------------------------- calling the API


def _attack_kwargs(image: Any, **overrides) -> dict[str, Any]:
    args = dict(image=image, true_class="cat", arch="alexnet", variants=["relu"],
                attack="fgsm", preset="interactive", eps_255=8, steps=0, step_size_255=0,
                target_class="none", seed=0)
    args.update(overrides)
    return args


def _raw_call(damaged_server: Server, api: str, data: list[Any]) -> tuple[str, Any]:
    """POST ``data`` to /gradio_api/call/<api> as lax JSON (NaN, Infinity allowed); return
    ("complete", outputs) or ("error", message) from the event stream."""
    base = damaged_server.url + "gradio_api"
    r = httpx.post(f"{base}/call/{api}", content=json.dumps({"data": data}),
                   headers={"content-type": "application/json"}, timeout=30)
    r.raise_for_status()
    with httpx.stream("GET", f"{base}/call/{api}/{r.json()['event_id']}", timeout=30) as stream:
        lines = "".join(stream.iter_text()).splitlines()
    events = [(a.split(":", 1)[1].strip(), b.split(":", 1)[1]) for a, b in zip(lines, lines[1:])
              if a.startswith("event:") and b.startswith("data:")]
    event, data_text = next((e, d) for e, d in reversed(events) if e in ("complete", "error"))
    payload = json.loads(data_text)
    return event, (payload.get("error") if event == "error" else payload)


def _upload(damaged_server: Server, path: Path) -> dict[str, Any]:
    with open(path, "rb") as f:
        r = httpx.post(damaged_server.url + "gradio_api/upload", files={"files": (path.name, f)}, timeout=30)
    r.raise_for_status()
    return {"path": r.json()[0], "orig_name": path.name, "meta": {"_type": "gradio.FileData"}}


def _raw_attack(damaged_server: Server, images: dict[str, Path], **overrides) -> tuple[str, Any]:
    args = _attack_kwargs(_upload(damaged_server, images["good.png"]), **overrides)
    return _raw_call(damaged_server, "attack", list(args.values()))


def _normal_attack(client: Client, images: dict[str, Path], seed: int) -> None:
    """A correct request right after a bad one: answered, and for this request."""
    out = client.predict(**_attack_kwargs(handle_file(str(images["good.png"])), seed=seed,
                                          eps_255=4 + seed % 7),
                         api_name="/attack")
    numbers = out[14]
    assert numbers["seed"] == seed and numbers["eps_255"] == 4 + seed % 7
    assert numbers["models"][0]["model"] == "alexnet-relu" and "error" not in numbers["models"][0]
    assert numbers["models"][0]["linf_255"] <= 4 + seed % 7 + 1e-3


# ---------------------------------------------------------------- the matrix

# (id, how to send it, the answer expected). Every call returns "error: <message>" or
# "ok: <summary>"; "ok" cases are odd-but-valid input: the attack must run and its "input"
# note must say how the picture was made.
Call = Callable[[Client, Server, dict[str, Path]], str]


def _api(api: str, **kwargs) -> Call:
    """Through gradio_client; "@name" stands for the picture ``name`` of IMAGES, uploaded.
    For /attack, unnamed inputs take the values of a normal request."""

    def call(client, damaged_server, images):
        resolved = {k: (handle_file(str(images[v[1:]])) if isinstance(v, str) and v.startswith("@") else v)
                    for k, v in kwargs.items()}
        if api == "/attack":
            resolved = _attack_kwargs(resolved.pop("image", handle_file(str(images["good.png"]))),
                                      **resolved)
        try:
            out = client.predict(**resolved, api_name=api)
        except Exception as e:  # the client raises AppError (or QueueError...) with the message
            return f"error: {e}"
        if api == "/attack":
            return "ok: " + out[14]["input"] + " | " + json.dumps(out[14]["models"])
        if api == "/prepare_image":
            return "ok: " + out[1]
        return "ok: " + json.dumps(out, default=str)[:2000]

    return call


def _raw(api: str, **overrides) -> Call:
    """Over plain HTTP (lax JSON); for other endpoints than /attack, give every input, in order."""

    def call(client, damaged_server, images):
        if api == "/attack":
            event, value = _raw_attack(damaged_server, images, **overrides)
        else:
            event, value = _raw_call(damaged_server, api.strip("/"), list(overrides.values()))
        return f"{'error' if event == 'error' else 'ok'}: {value}"

    return call


def _raw_image(payload: Any) -> Call:
    def call(client, damaged_server, images):
        event, value = _raw_call(damaged_server, "attack", list(_attack_kwargs(payload).values()))
        return f"{'error' if event == 'error' else 'ok'}: {value}"

    return call


def _raw_upload(name: str) -> Call:
    def call(client, damaged_server, images):
        with open(images[name], "rb") as f:
            r = httpx.post(damaged_server.url + "gradio_api/upload", files={"files": (name, f)}, timeout=30)
        return f"{'ok' if r.is_success else 'error'}: {r.status_code} {r.text}"

    return call


def _sweep(**overrides) -> Call:
    args = dict(arch="alexnet", variants=["relu"], attack="fgsm", preset="interactive",
                eps_255="0, 4", n=4, seed=0)
    return _api("/sweep", **{**args, **overrides})


CASES = [
    # --- images
    ("not an image", _api("/attack", image="@not-an-image.png"), r"error: not an image file PIL can read"),
    ("not an image, preview", _api("/prepare_image", image="@not-an-image.png"), r"error: not an image file"),
    ("empty file", _api("/attack", image="@empty.png"), r"error: not an image file"),
    ("truncated PNG", _api("/attack", image="@truncated.png"), r"error: the image file is damaged or truncated"),
    ("truncated PNG, preview", _api("/prepare_image", image="@truncated.png"), r"error: .*damaged or truncated"),
    ("10000x10000 bomb", _api("/attack", image="@bomb.png"),
     r"error: image is 10000x10000 = 100.0 megapixels; the limit is 40 megapixels"),
    ("10000x10000 bomb, preview", _api("/prepare_image", image="@bomb.png"), r"error: .*megapixels"),
    ("file over 25 MB", _api("/attack", image="@over-25mb.png"),
     r"error: .*exceeds the maximum file size of 26214400 bytes"),  # gradio_client checks first
    ("file over 25 MB, plain upload", _raw_upload("over-25mb.png"),
     r"error: 413 File size exceeded maximum allowed size of 26214400 bytes"),
    ("no image", _api("/attack", image=None), r"error: no image"),
    ("a server path, not an upload", _raw_image({"path": "/etc/passwd", "meta": {"_type": "gradio.FileData"}}),
     r"error: .*not uploaded by a user"),
    ("a bare string as the image", _raw_image("/etc/passwd"), r"error: .*ImageData"),
    ("a data URL, no file", _raw_image({"url": "data:image/png;base64,AAAA", "path": None,
                                        "meta": {"_type": "gradio.FileData"}}),
     r"error: image: expected an uploaded image file"),
    ("RGBA", _api("/attack", image="@rgba.png"), r"ok: 40x40 RGBA image: transparency laid over white"),
    ("palette", _api("/attack", image="@palette.png"), r"ok: 40x40 P image: palette expanded"),
    ("grayscale", _api("/attack", image="@gray.png"), r"ok: 40x40 L image: grayscale copied"),
    ("CMYK", _api("/attack", image="@cmyk.jpg"), r"ok: 40x40 CMYK image: CMYK converted to RGB"),
    ("16-bit", _api("/attack", image="@16bit.png"), r"ok: 40x40 I;16 image: 16-bit range scaled to 8 bits"),
    ("float", _api("/attack", image="@float.tiff"), r"ok: 40x40 F image: float values in \[0, 1\] used as is"),
    ("1x1", _api("/attack", image="@1x1.png"), r"ok: 1x1 RGB image: enlarged to 32x32"),
    ("EXIF-rotated", _api("/attack", image="@exif.jpg"), r"ok: 32x64 RGB image: rotated per its EXIF orientation"),
    ("animated GIF", _api("/attack", image="@animated.gif"), r"ok: 40x40 P image: first of 2 frames"),
    # --- epsilon
    ("eps negative", _api("/attack", eps_255=-1), r"error: epsilon must lie in \(0, 64\]"),
    ("eps zero", _api("/attack", eps_255=0), r"error: epsilon must lie in \(0, 64\]"),
    ("eps above the pixel range", _api("/attack", eps_255=256), r"error: epsilon must lie in \(0, 64\]"),
    ("eps NaN", _raw("/attack", eps_255=float("nan")), r"error: epsilon must be finite"),
    ("eps +infinity", _raw("/attack", eps_255=float("inf")), r"error: epsilon must be finite"),
    ("eps -infinity", _raw("/attack", eps_255=float("-inf")), r"error: epsilon must be finite"),
    ("eps text", _api("/attack", eps_255="lots"), r"error: epsilon must be a number"),
    ("eps a list", _raw("/attack", eps_255=[8]), r"error: epsilon must be a number"),
    # --- steps, step size, seed
    ("steps a million", _api("/attack", attack="pgd", steps=1_000_000), r"error: steps must be a whole number in 1..200"),
    ("steps negative", _api("/attack", attack="pgd", steps=-1), r"error: steps must be a whole number in 1..200"),
    ("steps fractional", _api("/attack", attack="pgd", steps=2.5), r"error: steps must be a whole number"),
    ("steps 0 = the preset's", _api("/attack", attack="pgd", steps=0), r'ok: .*"steps": 10'),
    ("step size NaN", _raw("/attack", attack="pgd", step_size_255=float("nan")), r"error: step size must be finite"),
    ("step size negative", _api("/attack", attack="pgd", step_size_255=-2), r"error: step size must lie in \(0, 64\]"),
    ("seed negative", _api("/attack", seed=-5), r"error: seed must be a whole number in 0..2147483647"),
    ("seed huge", _api("/attack", seed=2**40), r"error: seed must be a whole number in 0..2147483647"),
    # --- names
    ("unknown architecture", _api("/attack", arch="vgg16"), r"error: unknown architecture 'vgg16'; choose resnet18 or alexnet"),
    ("unknown model variant", _api("/attack", variants=["relu", "kwta-0.3"]), r"error: unknown model variant 'kwta-0.3'"),
    ("empty model selection", _api("/attack", variants=[]), r"error: no model selected"),
    ("variants not a list", _raw("/attack", variants=7), r"error: variants must be a list"),
    ("unknown attack", _api("/attack", attack="carlini"), r"error: unknown attack 'carlini'; choose from fgsm"),
    ("attack not a string", _raw("/attack", attack={"name": "pgd"}), r"error: unknown attack"),
    ("unknown preset", _api("/attack", preset="fastest"), r"error: unknown preset 'fastest' for fgsm"),
    ("target class out of range", _api("/attack", attack="pgd", target_class=12), r"error: target class must be a class index 0..9"),
    ("unknown target class", _api("/attack", attack="pgd", target_class="unicorn"), r"error: unknown target class 'unicorn'"),
    ("target = true class", _api("/attack", attack="pgd", target_class="cat"), r"error: the target class is the true class"),
    ("targeted attack, no target", _api("/attack", attack="vga"), r"error: vga is a targeted attack: pick a target class"),
    ("untargeted attack, a target", _api("/attack", attack="deepfool", target_class="ship"), r"error: deepfool is untargeted"),
    ("unknown true class", _api("/attack", true_class="zebra"), r"error: unknown true class 'zebra'"),
    ("unknown layer", lambda client, damaged_server, images: (
        _normal_attack(client, images, seed=1),  # the maps need this session's last attack
        _api("/activations", layer="features.99")(client, damaged_server, images))[1],
     r"error: unknown layer 'features.99' for alexnet"),
    ("unknown attack, controls", _api("/attack_controls", attack="nope", preset="paper"), r"error: unknown attack 'nope'"),
    # --- sweeps
    ("sweep: a million images", _sweep(n=1_000_000), r"error: number of images must be a whole number in 1..500"),
    ("sweep: more images than the data", _sweep(n=400), r"error: asked for 400 images, but there are only 10"),
    ("sweep: 50 epsilons", _sweep(eps_255=", ".join(map(str, range(50)))), r"error: at most 10 epsilon values"),
    ("sweep: epsilon text", _sweep(eps_255="0, x"), r"error: epsilon must be a number"),
    ("sweep: epsilon NaN", _raw("/sweep", arch="alexnet", variants=["relu"], attack="fgsm", preset="interactive",
                                eps_255=[float("nan")], n=4, seed=0), r"error: epsilon must be finite"),
    ("sweep: no models", _sweep(variants=[]), r"error: no model selected"),
    # --- time
    ("past the time limit", _api("/attack", attack="gradient-estimation", preset="paper", eps_255=0.5,
                                 true_class="unknown", variants=["relu", "kwta-0.1"]),
     rf"error: stopped.*passed its {TIME_LIMIT_S} s (time )?limit"),
]


@pytest.mark.parametrize("call, expected", [pytest.param(c, e, id=i) for i, c, e in CASES])
def test_bad_input_gets_a_clear_answer_and_the_server_stays_well(damaged_server, client, images, call, expected, request):
    start = time.monotonic()
    answer = call(client, damaged_server, images)
    seconds = time.monotonic() - start
    limit = ANSWER_WITHIN_S + (TIME_LIMIT_S if "time limit" in request.node.callspec.id else 0)
    assert re.search(expected, answer, flags=re.S), answer[:1000]
    assert seconds < limit, f"answered after {seconds:.1f} s"
    assert "Traceback" not in answer and "Could not preprocess" not in answer
    assert damaged_server.process.poll() is None, damaged_server.tail()
    _normal_attack(client, images, seed=sum(map(ord, request.node.callspec.id)) % 1000)


def test_matrix_is_wide():
    assert len(CASES) >= 20 and len({i for i, _, _ in CASES}) == len(CASES)


# ---------------------------------------------------------------- damaged checkpoints


def test_damaged_checkpoints_are_named_and_the_others_serve(damaged_server, client, images):
    out = client.predict(**_attack_kwargs(handle_file(str(images["good.png"])), attack="pgd",
                                          variants=["relu", "kwta-0.2", "kwta-0.1"], seed=3),
                         api_name="/attack")
    by_model = {m["model"]: m for m in out[14]["models"]}
    assert "error" not in by_model["alexnet-relu"] and "error" not in by_model["alexnet-kwta-0.1"]
    broken = by_model["alexnet-kwta-0.2"]["error"]
    assert "alexnet-kwta-0.2/model.safetensors" in broken and "not a readable safetensors file" in broken
    assert out[7].startswith("**Not available.**") and "alexnet-kwta-0.2/model.safetensors" in out[7]
    assert out[0] is not None and out[8] is not None  # the good slots have their pictures

    out = client.predict(**_attack_kwargs(handle_file(str(images["good.png"])), arch="resnet18",
                                          variants=["relu", "kwta-0.1", "kwta-0.2"]),
                         api_name="/attack")
    errors = {m["model"]: m["error"] for m in out[14]["models"]}
    assert "resnet18-relu" in errors["resnet18-relu"] and "weights do not fit the model" in errors["resnet18-relu"]
    assert ("resnet18-kwta-0.1/model.safetensors" in errors["resnet18-kwta-0.1"]
            and "checksum does not match" in errors["resnet18-kwta-0.1"])
    assert "not found" in errors["resnet18-kwta-0.2"] and "Hub repo" in errors["resnet18-kwta-0.2"]

    status = client.predict(api_name="/model_status")
    assert "`alexnet-kwta-0.2`: FAILED" in status and "alexnet-kwta-0.2/model.safetensors" in status
    assert "`resnet18-kwta-0.1`: FAILED" in status and "checksum" in status
    assert "`alexnet-relu`: loaded" in status
    _normal_attack(client, images, seed=11)


def test_the_cache_remembers_damage_but_looks_again_for_a_missing_model(monkeypatch):
    from kwta_demo.app import model_cache
    from kwta_demo.models.architectures import ModelConfig, build_model
    from kwta_demo.models.checkpoints import CheckpointError, CheckpointNotFoundError

    calls = []
    hub_up = False

    def loader(name, device):
        calls.append(name)
        if name == "alexnet-kwta-0.2":
            raise CheckpointError("alexnet-kwta-0.2/model.safetensors: not a readable safetensors file")
        if not hub_up:
            raise CheckpointNotFoundError("the Hub did not answer")
        return build_model(ModelConfig("alexnet", "relu"))

    cache = model_cache.ModelCache("cpu", loader)
    for _ in range(2):  # the second attempt is answered from memory: the Hub is not asked
        with pytest.raises(CheckpointError, match="did not answer"):
            cache.get("alexnet-relu")
    assert calls == ["alexnet-relu"]
    for _ in range(2):
        with pytest.raises(CheckpointError, match="safetensors"):
            cache.get("alexnet-kwta-0.2")
    assert calls.count("alexnet-kwta-0.2") == 1

    monkeypatch.setattr(model_cache, "RETRY_NOT_FOUND_S", 0.0)
    cache = model_cache.ModelCache("cpu", loader)
    with pytest.raises(CheckpointError, match="did not answer"):
        cache.get("alexnet-relu")
    hub_up = True
    assert cache.get("alexnet-relu") is not None  # looked for again: now it is there
    with pytest.raises(CheckpointError, match="safetensors"):
        cache.get("alexnet-kwta-0.2")
    with pytest.raises(CheckpointError, match="safetensors"):
        cache.get("alexnet-kwta-0.2")
    assert calls.count("alexnet-kwta-0.2") == 2  # once per cache: damage is remembered for good
    states = {s.name: s.state for s in cache.status()}
    assert states["alexnet-relu"] == "loaded" and states["alexnet-kwta-0.2"] == "failed"


def test_a_deadline_stops_a_cached_model_at_its_next_forward_pass():
    from kwta_demo.app.model_cache import ModelCache, RequestTimeout, deadline
    from kwta_demo.models.architectures import ModelConfig, build_model

    model = ModelCache("cpu", lambda name, device: build_model(ModelConfig("alexnet", "relu"))).get("alexnet-relu")
    x = torch.rand(1, 3, 32, 32)
    with deadline(60):
        model(x)  # in time
    with deadline(-1), pytest.raises(RequestTimeout, match="passed its -1 s time limit"):
        model(x)
    model(x)  # outside any deadline (and in other threads) nothing is checked


# ---------------------------------------------------------------- start-up errors


@pytest.mark.parametrize("argv, env, message", [
    (["--port", "70000"], {}, "port must lie in 1..65535, got 70000"),
    (["--port", "http"], {}, "not a port number: 'http'"),
    ([], {"GRADIO_SERVER_PORT": "abc"}, "GRADIO_SERVER_PORT: not a port number: 'abc'"),
    (["--concurrency", "0"], {}, "must be positive"),
    (["--time-limit", "nan"], {}, "must be positive"),
    (["--device", "cuda:7"], {"CUDA_VISIBLE_DEVICES": ""}, "no CUDA GPU is available"),
    ([], {"KWTA_HUB_TIMEOUT": "soon"}, "KWTA_HUB_TIMEOUT must be a number"),
])
def test_bad_start_up_settings_are_one_clear_line(argv, env, message):
    run = subprocess.run([sys.executable, "app.py", *argv], cwd=ROOT, capture_output=True, text=True,
                         env={**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", **env}, timeout=120)
    assert run.returncode == 2, run.stderr
    assert message in run.stderr and "Traceback" not in run.stderr, run.stderr
