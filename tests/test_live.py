"""The live app without a browser: the numbers it sends are the API's numbers, every bad frame
or request gets one error and the server goes on, nothing from outside reaches a file, and the
command line and ``Inspection.live()`` start and stop it as a user would."""

from __future__ import annotations

import io
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import time
import urllib.request
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image
from starlette.testclient import TestClient

from mapscope.data.drawing import centre_like_mnist
from mapscope.errors import ConfigError
from mapscope.inspect.taps import layer_outputs
from mapscope.live import LiveModel, create_app, protocol
from mapscope.live.model import Explanation
from mapscope.runs import Run

INDEX = 1302


@pytest.fixture(scope="module")
def cnn_live(cnn_run, real_data):
    return LiveModel(Run.open(cnn_run).inspection(real_data), alike_images=2000)


@pytest.fixture(scope="module")
def client(cnn_live):
    with TestClient(create_app(cnn_live)) as test_client:
        yield test_client


def draw_frame(seq: int, pixels: np.ndarray, centre: bool = False) -> bytes:
    h, w = pixels.shape[:2]
    return struct.pack("<BIBHH", protocol.DRAW, seq, int(centre), h, w) + pixels.tobytes()


def read_answer(frame: bytes, layers) -> dict:
    """The ANSWER frame as numbers, read by the layout protocol.py documents."""
    kind, seq, server_ms, n = struct.unpack_from("<BIfH", frame)
    at = 11
    probabilities = np.frombuffer(frame, "<f4", n, at)
    at += 4 * n
    images = []
    for _ in range(2):
        h, w, c, lo, hi = struct.unpack_from("<HHBff", frame, at)
        at += 13
        images.append((np.frombuffer(frame, np.uint8, h * w * c, at).reshape(h, w), lo, hi))
        at += h * w * c
    (count,) = struct.unpack_from("<H", frame, at)
    at += 2
    maps = {}
    for view in layers[:count]:
        size = int(np.prod(view.shape))
        maps[view.name] = np.frombuffer(frame, np.uint8, size, at).reshape(view.shape)
        at += size
    (latent,) = struct.unpack_from("<H", frame, at)
    return {"kind": kind, "seq": seq, "ms": server_ms, "p": probabilities, "seen": images[0],
            "raw": images[1], "maps": maps, "latent": latent, "end": at + 2}  # fmt: skip


def receive(ws):
    message = ws.receive()
    if message.get("bytes") is not None:
        return message["bytes"]
    return json.loads(message["text"])


def test_the_app_sends_the_apis_numbers(cnn_live, client, cnn_run, real_data):
    """Probabilities bit for bit those of ``Inspection.predict_proba``; every layer's map within
    one colour step of ``layer_outputs``, on the layer's announced scale."""
    inspection = cnn_live.inspection
    pixels = inspection.bundle.raw("test", [INDEX])[0]
    expected = inspection.predict_proba("test", [INDEX])[0]
    outputs = layer_outputs(
        inspection.net, inspection.inputs("test", [INDEX]), [v.name for v in cnn_live.layers]
    )
    with client.websocket_connect("/ws") as ws:
        hello = receive(ws)
        assert hello["type"] == "hello" and hello["kind"] == "classifier"
        assert [layer["name"] for layer in hello["layers"]] == [
            "Conv2D_1", "Max_Pool_1", "Conv2D_2", "Max_Pool_2", "Conv2D_3", "Dense_1", "Dense_2"
        ]  # fmt: skip
        assert hello["gradcam_layer"] == "Conv2D_3"  # the deepest map (Grad-CAM's note names it)
        ws.send_bytes(draw_frame(7, pixels))
        answer = read_answer(receive(ws), cnn_live.layers)
    assert answer["kind"] == protocol.ANSWER and answer["seq"] == 7
    np.testing.assert_array_equal(answer["p"], expected.astype(np.float32))
    assert answer["p"].argmax() == 1  # test image 1302 is a 1
    np.testing.assert_array_equal(answer["raw"][0], pixels)
    for view in cnn_live.layers:
        values = answer["maps"][view.name] / 255 * (view.hi - view.lo) + view.lo
        truth = np.clip(outputs[view.name][0], view.lo, view.hi)
        step = (view.hi - view.lo) / 255
        assert np.abs(values - truth).max() <= step * 0.5 + 1e-5, view.name
    seen, lo, hi = answer["seen"]
    np.testing.assert_allclose(
        seen / 255 * (hi - lo) + lo, inspection.inputs("test", [INDEX])[0, 0], atol=(hi - lo) / 255
    )


def test_explanations_and_alike_images_are_the_api_results(cnn_live, client):
    pixels = cnn_live.inspection.bundle.raw("test", [INDEX])[0]
    with client.websocket_connect("/ws") as ws:
        receive(ws)
        ws.send_bytes(
            struct.pack("<BIBHH", protocol.EXPLAIN, 3, 0, 28, 28) + pixels.tobytes() + b"\x02"
        )
        explanation, alike = receive(ws), receive(ws)
    kind, seq, method, target, signed, bound = struct.unpack_from("<BIBHBf", explanation)
    assert (kind, seq, protocol.METHOD_CODES[method], target, signed) == (2, 3, "gradcam", 1, 0)
    direct = cnn_live.explain(pixels, "gradcam")
    assert bound == pytest.approx(float(np.abs(direct.map).max()), rel=1e-6)
    neighbours = cnn_live.alike(pixels)
    kind, seq, k = struct.unpack_from("<BIH", alike)
    assert (kind, k) == (protocol.ALIKE, 8)
    index, label, distance = struct.unpack_from("<IHf", alike, 7)
    assert (index, label) == (neighbours.indices[0], neighbours.labels[0])
    assert distance == pytest.approx(neighbours.distances[0], rel=1e-6)
    assert (neighbours.labels == 1).sum() >= 6  # a 1's neighbours in Dense_1 are mostly 1s
    assert np.all(np.diff(neighbours.distances) >= 0)


@pytest.mark.parametrize("method, signed, zero_level", [("gradcam", False, 0), ("ig", True, 128)])
def test_a_map_zero_everywhere_is_sent_as_such(method, signed, zero_level):
    """Grad-CAM is zero over the whole image where no map of its layer raises the class's score
    (test image 7 of a trained CNN): the frame's bound is 0, which the page words as "zero
    everywhere", and every pixel sits at the scale's zero (transparent on the drawing)."""
    nothing = Explanation(method, 9, np.zeros((28, 28), np.float32), signed)
    frame = protocol.encode_explanation(5, nothing)
    *_, bound = struct.unpack_from("<BIBHBf", frame)
    h, w, c, lo, hi = struct.unpack_from("<HHBff", frame, 13)
    pixels = np.frombuffer(frame, np.uint8, offset=13 + 13)
    assert bound == 0.0 and (h, w, c) == (28, 28, 1) and pixels.size == 28 * 28
    assert np.all(pixels == zero_level) and hi > lo
    some = Explanation(method, 9, np.full((28, 28), 0.25, np.float32), signed)
    *_, bound = struct.unpack_from("<BIBHBf", protocol.encode_explanation(5, some))
    assert bound == 0.25


def test_latest_wins_stale_frames_are_dropped(cnn_live, client):
    pixels = cnn_live.inspection.bundle.raw("test", [INDEX])[0]
    with client.websocket_connect("/ws") as ws:
        receive(ws)
        with cnn_live.lock:  # the model is busy (another client's attribution, say)
            for seq in range(1, 41):
                ws.send_bytes(draw_frame(seq, pixels))
            time.sleep(0.5)
        answered = []
        while not answered or answered[-1] != 40:
            answered.append(struct.unpack_from("<I", receive(ws), 1)[0])
    assert answered[-1] == 40 and len(answered) <= 2, answered  # the first, then the newest


def test_centring_puts_a_drawing_where_mnist_digits_are():
    drawing = np.zeros((28, 28), np.uint8)
    drawing[2:8, 20:23] = 255  # a small stroke in a corner
    centred = centre_like_mnist(drawing)
    rows, cols = np.nonzero(centred > 8)
    assert max(rows.max() - rows.min(), cols.max() - cols.min()) + 1 in (20, 21, 22)
    ys, xs = np.indices(centred.shape)
    mass = centred.astype(float)
    assert abs((ys * mass).sum() / mass.sum() - 13.5) <= 0.5
    assert abs((xs * mass).sum() / mass.sum() - 13.5) <= 0.5
    assert not centre_like_mnist(np.zeros((28, 28), np.uint8)).any()


BAD_FRAMES = {
    b"": "kind byte",
    b"\x09\x00\x00\x00\x00": "unknown frame kind 9",
    struct.pack("<BIBHH", 1, 1, 0, 27, 28) + bytes(27 * 28): "27x28",
    struct.pack("<BIBHH", 1, 1, 0, 28, 28) + bytes(100): "got 100 bytes",
    struct.pack("<BIBHH", 2, 1, 0, 28, 28) + bytes(784) + b"\x07": "method byte",
    struct.pack("<BIBH", 3, 1, 0, 2) + struct.pack("<2f", np.nan, 1): "no NaN",
    struct.pack("<BIBH", 3, 1, 0, 8) + bytes(32): "autoencoder",
    bytes(70000): "over the 65536-byte cap",
}


def test_every_bad_frame_gets_one_error_and_the_connection_goes_on(cnn_live, client):
    pixels = cnn_live.inspection.bundle.raw("test", [INDEX])[0]
    with client.websocket_connect("/ws") as ws:
        receive(ws)
        for frame, words in BAD_FRAMES.items():
            ws.send_bytes(frame)
            message = receive(ws)
            assert message["type"] == "error" and words in message["message"], (frame[:12], message)
            assert "\n" not in message["message"]
        ws.send_text("hello?")
        assert "binary" in receive(ws)["message"]
        ws.send_bytes(draw_frame(99, pixels))
        assert read_answer(receive(ws), cnn_live.layers)["seq"] == 99


@given(
    st.one_of(
        st.binary(max_size=1200),
        st.builds(
            lambda kind, h, w, body: struct.pack("<BIBHH", kind, 5, 0, h, w) + body,
            st.integers(0, 255), st.integers(0, 40), st.integers(0, 40), st.binary(max_size=900),
        ),
        st.builds(
            lambda n, values: struct.pack("<BIBH", 3, 5, 1, n) + values,
            st.integers(0, 20), st.binary(max_size=80),
        ),
    )
)  # fmt: skip
def test_random_frames_never_stop_the_server(client, cnn_live, frame):
    """Whatever a client sends, it gets errors or answers, and the next good frame is answered."""
    pixels = np.zeros((28, 28), np.uint8)
    with client.websocket_connect("/ws") as ws:
        receive(ws)
        ws.send_bytes(frame)
        ws.send_bytes(draw_frame(4242, pixels))
        while True:
            message = receive(ws)
            if isinstance(message, dict):
                assert message["type"] == "error" and message["message"]
                continue
            assert message[0] in (1, 2, 3, 4)
            if message[0] == protocol.ANSWER and struct.unpack_from("<I", message, 1)[0] == 4242:
                break


def png_bytes(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def bomb_png(width: int, height: int) -> bytes:
    """A PNG whose header claims a huge image: how decompression bombs begin."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")  # fmt: skip


def test_http_requests_are_checked_and_reach_no_file(client, cnn_live):
    ok = client.get("/api/image", params={"part": "test", "index": INDEX}).json()
    assert (ok["index"], ok["label"], len(ok["pixels"])) == (INDEX, 1, 784)
    assert client.get("/api/image", params={"label": 7, "seed": 1}).json()["label"] == 7
    for params in (
        {"index": 10000},
        {"index": -1},
        {"index": "x"},
        {"part": "../x"},
        {"label": 10},
    ):
        response = client.get("/api/image", params=params)
        assert response.status_code == 400 and "error" in response.json(), params
    for path in (
        "/static/../app.py", "/static/%2e%2e%2fapp.py", "/atlas/../../etc/passwd",
        "/atlas/%2e%2e/%2e%2e/etc/passwd", "/unit/Nope/1", "/unit/Conv2D_3/128",
        "/api/oip/Conv2D_3/999.png", "/api/oip/..%2f/1.png", "/nothing",
    ):  # fmt: skip
        response = client.get(path)
        assert response.status_code == 404 and "error" in response.json(), path
        assert "root:" not in response.text
    page = client.get("/unit/Conv2D_3/5")
    assert page.status_code == 200 and "unit.js" in page.text
    assert "default-src 'self'" in page.headers["content-security-policy"]
    oip = client.get("/api/oip/Conv2D_3/5.png")
    assert oip.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(oip.content)).size == (28, 28)
    assert client.get("/", headers={"host": "evil.example"}).status_code == 400


def test_uploads_are_read_like_cnn_predict_and_bad_files_are_refused(client, cnn_live):
    from mapscope.cnn.predict import read_drawing

    drawing = np.full((140, 140), 255, np.uint8)
    drawing[20:120, 60:75] = 0  # dark ink on white paper
    data = png_bytes(drawing)
    answer = client.post("/api/upload", content=data).json()
    expected = read_drawing(io.BytesIO(data), 28)[0]
    np.testing.assert_array_equal(np.array(answer["pixels"]).reshape(28, 28), expected)
    for body, status, words in (
        (b"not an image", 400, "not a readable image"),
        (png_bytes(np.full((50, 50), 200, np.uint8)), 400, "blank"),
        (bomb_png(100_000, 100_000), 400, "too large"),
        (b"", 400, "no image"),
        (bytes(9 * 2**20), 413, "over 8 MiB"),
    ):
        response = client.post("/api/upload", content=body)
        assert response.status_code == status and words in response.json()["error"], words
    assert client.get("/api/upload").status_code == 405


def test_a_page_of_another_site_cannot_open_the_socket(client):
    from starlette.websockets import WebSocketDisconnect

    evil = {"origin": "http://evil.example"}
    with (
        pytest.raises(WebSocketDisconnect) as refused,
        client.websocket_connect("/ws", headers=evil) as ws,
    ):
        ws.receive()
    assert refused.value.code == 1008
    with client.websocket_connect("/ws", headers={"origin": "http://testserver"}) as ws:
        assert receive(ws)["type"] == "hello"


def test_an_autoencoder_answers_with_its_code_and_decodes_sliders(ae_run, real_data):
    model = LiveModel(Run.open(ae_run).inspection(real_data), alike_images=1000)
    pixels = model.bundle.raw("test", [INDEX])[0]
    answer = model.answer(pixels)
    assert answer.probabilities is None and answer.code.shape == (8,)
    np.testing.assert_allclose(model.decode(answer.code), answer.reconstruction, atol=1e-6)
    axes = model.latent_axes()
    np.testing.assert_allclose(
        model.code_from_axes(np.zeros(len(axes.components))), axes.mean, rtol=1e-5, atol=1e-6
    )
    moved = model.code_from_axes(np.eye(len(axes.components))[0] * 2)
    assert np.abs(model.decode(moved) - model.decode(axes.mean)).max() > 1e-3
    with pytest.raises(ConfigError, match="no class scores"):
        model.explain(pixels, "saliency")
    assert model.alike(pixels).layer == "Latent"
    with TestClient(create_app(model)) as client, client.websocket_connect("/ws") as ws:
        hello = receive(ws)
        assert hello["kind"] == "autoencoder" and len(hello["latent"]["mean"]) == 8
        values = np.zeros(hello["latent"]["axes"], np.float32)
        values[0] = 2
        ws.send_bytes(struct.pack("<BIBH", 3, 8, 1, len(values)) + values.tobytes())
        decoded = receive(ws)
        kind, seq, latent = struct.unpack_from("<BIH", decoded)
        code = np.frombuffer(decoded, "<f4", latent, 7)
        np.testing.assert_allclose(code, moved, rtol=1e-5, atol=1e-6)
        image = np.frombuffer(decoded, np.uint8, 784, 7 + 4 * latent + 13).reshape(28, 28)
        assert np.abs(image / 255 - model.decode(moved)).max() <= 1 / 255 + 1e-6


def test_inspection_live_serves_in_the_background_and_stops(cnn_run, real_data):
    inspection = Run.open(cnn_run).inspection(real_data)
    server = inspection.live(alike_images=500)
    try:
        assert f'src="{server.url}"' in server._repr_html_()
        with urllib.request.urlopen(server.url, timeout=10) as page:
            assert page.status == 200 and b"live.js" in page.read()
    finally:
        server.stop()
    with pytest.raises(OSError):
        urllib.request.urlopen(server.url, timeout=2)


def test_the_command_line_refuses_what_it_cannot_do(mapscope, cnn_run):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, out, err = mapscope("live", "--model", cnn_run, "--port", port)
    assert code == 2 and err.startswith("error: port") and "in use" in err and err.count("\n") == 1
    code, _, err = mapscope("live", "--model", cnn_run, "--host", "0.0.0.0")
    assert code == 2 and "--allow-remote" in err


def test_mapscope_live_prints_its_url_and_stops_on_ctrl_c(lenet, real_data):
    """A user's own network from the command line (--module), stopped by Ctrl-C."""
    env = {**os.environ, "MAPSCOPE_DATA": str(real_data)}
    nets = Path(__file__).parent / "user_nets.py"
    command = [sys.executable, "-m", "mapscope", "live", "--module", f"{nets}:LeNet5",
               "--weights", str(lenet[1] / "lenet.safetensors"), "--preprocess",
               "normalize:0.1307/0.3081", "--port", "0", "--alike-images", "500"]  # fmt: skip
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    try:
        line = process.stdout.readline()
        assert line.startswith("mapscope live: ") and "http://127.0.0.1:" in line, line
        url = line.split(" at ")[1].strip()
        with urllib.request.urlopen(url + "api/model", timeout=20) as response:
            hello = json.load(response)
        assert hello["dataset"] == "mnist" and "LeNet5" in hello["source"]
        assert [layer["name"] for layer in hello["layers"]][:2] == ["features.0", "features.1"]
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=30)
    finally:
        process.kill()
    assert process.returncode == 0, err
    assert "stopped." in out and "Traceback" not in err


def test_inputs_of_another_size_or_type_are_refused(cnn_live):
    with pytest.raises(ConfigError, match="28x28 uint8"):
        cnn_live.answer(np.zeros((32, 32), np.uint8))
    with pytest.raises(ConfigError, match="28x28 uint8"):
        cnn_live.answer(np.zeros((28, 28), np.float32))
    with pytest.raises(ConfigError, match="layer 'Nope' unknown"):
        cnn_live.unit_oip("Nope", 0)
    assert torch.is_grad_enabled()
