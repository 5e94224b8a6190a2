// mapscope live: the drawing page. The server computes; this file draws what it answers.
// Wire format: see mapscope/live/protocol.py (little-endian binary frames, JSON for hello/errors).
"use strict";

const Live = (() => {
  const DRAW = 1, EXPLAIN = 2, DECODE = 3;
  const ANSWER = 1, EXPLANATION = 2, ALIKE = 3, DECODED = 4;
  const METHODS = ["saliency", "ig", "gradcam"];
  const METHOD_TITLES = { saliency: "saliency", ig: "integrated gradients", gradcam: "Grad-CAM" };

  class Reader {
    constructor(buffer) { this.view = new DataView(buffer); this.bytes = new Uint8Array(buffer); this.at = 0; }
    u8() { return this.view.getUint8(this.at++); }
    u16() { const v = this.view.getUint16(this.at, true); this.at += 2; return v; }
    u32() { const v = this.view.getUint32(this.at, true); this.at += 4; return v; }
    f32() { const v = this.view.getFloat32(this.at, true); this.at += 4; return v; }
    f32s(n) { const out = new Float32Array(n); for (let i = 0; i < n; i++) out[i] = this.f32(); return out; }
    take(n) { const out = this.bytes.subarray(this.at, this.at + n); this.at += n; return out; }
    image() {
      const h = this.u16(), w = this.u16(), c = this.u8(), lo = this.f32(), hi = this.f32();
      return { h, w, c, lo, hi, data: this.take(h * w * c) };
    }
  }

  // one frame from the server as an object; layer data are views into the frame's bytes
  function decode(buffer, layers) {
    const r = new Reader(buffer);
    const kind = r.u8(), seq = r.u32();
    if (kind === ANSWER) {
      const serverMs = r.f32();
      const n = r.u16();
      const probabilities = r.f32s(n);
      const seen = r.image(), raw = r.image();
      const count = r.u16();
      const maps = [];
      for (let i = 0; i < count; i++) {
        const size = layers[i].shape.reduce((a, b) => a * b, 1);
        maps.push(r.take(size));
      }
      const latent = r.u16();
      const code = latent ? r.f32s(latent) : null;
      const reconstruction = latent ? r.image() : null;
      return { kind, seq, serverMs, probabilities: n ? probabilities : null, seen, raw, maps, code, reconstruction };
    }
    if (kind === EXPLANATION) {
      const method = METHODS[r.u8()], target = r.u16(), signed = r.u8() === 1, bound = r.f32();
      return { kind, seq, method, target, signed, bound, map: r.image() };
    }
    if (kind === ALIKE) {
      const k = r.u16(), items = [];
      for (let i = 0; i < k; i++) items.push({ index: r.u32(), label: r.u16(), distance: r.f32(), image: r.image() });
      return { kind, seq, items };
    }
    if (kind === DECODED) {
      const n = r.u16();
      return { kind, seq, code: r.f32s(n), image: r.image() };
    }
    throw new Error("unknown frame kind " + kind);
  }

  function imageFrame(kind, seq, pixels, h, w, centre, extra) {
    const tail = extra === undefined ? 0 : 1;
    const buffer = new ArrayBuffer(10 + pixels.length + tail);
    const view = new DataView(buffer);
    view.setUint8(0, kind); view.setUint32(1, seq, true); view.setUint8(5, centre ? 1 : 0);
    view.setUint16(6, h, true); view.setUint16(8, w, true);
    new Uint8Array(buffer, 10, pixels.length).set(pixels);
    if (tail) view.setUint8(10 + pixels.length, extra);
    return buffer;
  }

  function decodeFrame(seq, mode, values) {
    const buffer = new ArrayBuffer(8 + 4 * values.length);
    const view = new DataView(buffer);
    view.setUint8(0, DECODE); view.setUint32(1, seq, true); view.setUint8(5, mode);
    view.setUint16(6, values.length, true);
    values.forEach((v, i) => view.setFloat32(8 + 4 * i, v, true));
    return buffer;
  }

  // uint8 values through a colour table (256 rows of rgb) into RGBA at (x0, y0) of an
  // ImageData, each value a scale x scale block (crisp pixels, thin gaps between maps)
  function paint(target, width, x0, y0, data, h, w, table, offset = 0, scale = 1) {
    const out = target.data;
    for (let y = 0; y < h * scale; y++) {
      const row = offset + Math.floor(y / scale) * w;
      let o = ((y0 + y) * width + x0) * 4;
      for (let x = 0; x < w * scale; x++, o += 4) {
        const rgb = table[data[row + Math.floor(x / scale)]];
        out[o] = rgb[0]; out[o + 1] = rgb[1]; out[o + 2] = rgb[2]; out[o + 3] = 255;
      }
    }
  }

  // an image block (grey or colour) drawn on a canvas at its own resolution
  function showImage(canvas, image, table) {
    canvas.width = image.w; canvas.height = image.h;
    const ctx = canvas.getContext("2d");
    const out = ctx.createImageData(image.w, image.h);
    for (let i = 0; i < image.w * image.h; i++) {
      if (image.c === 3) {
        out.data.set([image.data[3 * i], image.data[3 * i + 1], image.data[3 * i + 2], 255], 4 * i);
      } else {
        const rgb = table ? table[image.data[i]] : [image.data[i], image.data[i], image.data[i]];
        out.data.set([rgb[0], rgb[1], rgb[2], 255], 4 * i);
      }
    }
    ctx.putImageData(out, 0, 0);
  }

  function legend(layer, table) {
    const box = document.createElement("span");
    box.className = "legend";
    const bar = document.createElement("canvas");
    bar.width = 256; bar.height = 1;
    const ctx = bar.getContext("2d");
    const img = ctx.createImageData(256, 1);
    for (let i = 0; i < 256; i++) img.data.set([...table[i], 255], 4 * i);
    ctx.putImageData(img, 0, 0);
    const lo = document.createElement("span"), hi = document.createElement("span");
    lo.textContent = fmt(layer.lo); hi.textContent = fmt(layer.hi);
    box.append(lo, bar, hi);
    return box;
  }

  function fmt(v) {
    const a = Math.abs(v);
    return a !== 0 && (a < 0.01 || a >= 1000) ? v.toExponential(1) : v.toFixed(a < 1 ? 3 : 2);
  }

  function value(layer, q) { return layer.lo + (q / 255) * (layer.hi - layer.lo); }

  function socketUrl() {
    return (location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/ws";
  }

  return { DRAW, EXPLAIN, DECODE, ANSWER, EXPLANATION, ALIKE, DECODED, METHODS, METHOD_TITLES,
           decode, imageFrame, decodeFrame, paint, showImage, legend, fmt, value, socketUrl };
})();

// --- the drawing page --------------------------------------------------------------------------
(() => {
  const pad = document.getElementById("pad");
  if (!pad) return;  // the unit page uses only the helpers above
  const $ = (id) => document.getElementById(id);
  const stats = { answers: 0, errors: [], latencies: [], serverMs: [], dropped: 0, lastError: null,
                  explanations: 0, alike: 0, decoded: 0, predicted: null };
  window.mapscopeLive = stats;

  let hello = null, socket = null, seq = 0, scheduled = false, pauseTimer = null, lastSend = 0;
  let tool = "pen", drawing = false, last = null, undo = [];
  const sent = new Map();
  let layerViews = [];
  let latestInput = null;

  const ctx = pad.getContext("2d", { willReadFrequently: true });

  function status(text, bad) { const s = $("status"); s.textContent = text; s.classList.toggle("error", !!bad); }

  function connect() {
    socket = new WebSocket(Live.socketUrl());
    socket.binaryType = "arraybuffer";
    socket.onopen = () => status("connected");
    socket.onclose = () => { status("disconnected: reload the page once the server runs again", true); };
    socket.onmessage = (event) => {
      if (typeof event.data === "string") return onText(JSON.parse(event.data));
      const frame = Live.decode(event.data, hello.layers);
      if (frame.kind === Live.ANSWER) onAnswer(frame);
      else if (frame.kind === Live.EXPLANATION) onExplanation(frame);
      else if (frame.kind === Live.ALIKE) onAlike(frame);
      else if (frame.kind === Live.DECODED) onDecoded(frame);
    };
  }

  function onText(message) {
    if (message.type === "hello") { hello = message; setUp(); return; }
    if (message.type === "error") {
      stats.errors.push(message.message); stats.lastError = message.message;
      status("error: " + message.message, true);
    }
  }

  // --- set-up from the server's hello ----------------------------------------------------------
  function setUp() {
    const [channels, h, w] = hello.input;
    pad.width = 10 * w; pad.height = 10 * h;
    clearPad();
    $("source").textContent = `${hello.source} · ${hello.dataset} · ${hello.kind}`;
    if (hello.atlas) { $("atlas-link").hidden = false; $("atlas-link").href = hello.atlas; }
    $("centre").checked = hello.centre;
    $("index").max = hello.test_images - 1;
    const pick = $("class-pick");
    hello.class_names.forEach((name, i) => pick.add(new Option(name === String(i) ? name : `${i}: ${name}`, i)));
    const method = $("method");
    method.add(new Option("no overlay", ""));
    hello.methods.forEach((m) => method.add(new Option(Live.METHOD_TITLES[m], m)));
    if (hello.methods.length) method.value = hello.methods[0];
    $("why-tools").hidden = !hello.methods.length;
    $("prediction-panel").hidden = hello.kind !== "classifier";
    if (hello.kind === "autoencoder") setUpLatent();
    buildLayers();
    stats.ready = true;
    send();
  }

  function buildLayers() {
    const list = $("layer-list");
    list.textContent = "";
    layerViews = hello.layers.map((layer, i) => {
      const box = document.createElement("article");
      box.className = "layer";
      box.dataset.layer = layer.name;
      const head = document.createElement("header");
      const title = document.createElement("h3");
      const signed = layer.lo < 0;
      const table = signed ? hello.colours.signed : hello.colours.sequential;
      title.textContent = layer.kind === "maps"
        ? `${layer.name} · ${layer.shape[0]} maps of ${layer.shape[1]}×${layer.shape[2]}`
        : `${layer.name} · ${layer.shape[0]} units`;
      head.append(title, Live.legend(layer, table));
      const canvas = document.createElement("canvas");
      canvas.className = "grid";
      const view = { layer, index: i, canvas, table, signed };
      if (layer.kind === "maps") {
        const [c, h, w] = layer.shape;
        view.cols = Math.min(c, 16);
        view.rows = Math.ceil(c / view.cols);
        view.scale = Math.max(1, Math.floor(52 / Math.max(h, w)));
        view.gap = 2;
        view.tileW = w * view.scale + view.gap; view.tileH = h * view.scale + view.gap;
        canvas.width = view.cols * view.tileW - view.gap; canvas.height = view.rows * view.tileH - view.gap;
        canvas.style.width = canvas.width + "px";
      } else {
        const n = layer.shape[0];
        view.barWidth = Math.max(3, Math.min(24, Math.floor(900 / n)));
        canvas.width = n * view.barWidth; canvas.height = 60;
        canvas.style.width = canvas.width + "px";
      }
      canvas.addEventListener("click", (event) => openUnit(view, event));
      canvas.addEventListener("mousemove", (event) => {
        const unit = unitAt(view, event);
        canvas.title = unit === null ? "" : `${layer.name} unit ${unit}: click for its page`;
      });
      box.append(head, canvas);
      list.append(box);
      return view;
    });
  }

  function unitAt(view, event) {
    const rect = view.canvas.getBoundingClientRect();
    const x = (event.clientX - rect.left) * view.canvas.width / rect.width;
    const y = (event.clientY - rect.top) * view.canvas.height / rect.height;
    let unit;
    if (view.layer.kind === "maps") {
      unit = Math.floor(y / view.tileH) * view.cols + Math.floor(x / view.tileW);
    } else {
      unit = Math.floor(x / view.barWidth);
    }
    return unit >= 0 && unit < view.layer.shape[0] ? unit : null;
  }

  function openUnit(view, event) {
    const unit = unitAt(view, event);
    if (unit === null) return;
    remember();
    location.href = view.layer.unit_url.replace("{unit}", unit);
  }

  // the input of the last drawing, for the unit page to show the unit's map on it
  function remember() {
    if (!latestInput) return;
    let text = "";
    latestInput.pixels.forEach((v) => { text += String.fromCharCode(v); });
    sessionStorage.setItem("mapscope-live-input", JSON.stringify({
      h: latestInput.h, w: latestInput.w, centre: latestInput.centre, pixels: btoa(text) }));
  }

  // --- drawing ---------------------------------------------------------------------------------
  function clearPad() { ctx.fillStyle = "#000"; ctx.fillRect(0, 0, pad.width, pad.height); }

  function snapshot() {
    undo.push(ctx.getImageData(0, 0, pad.width, pad.height));
    if (undo.length > 50) undo.shift();
  }

  function point(event) {
    const rect = pad.getBoundingClientRect();
    return { x: (event.clientX - rect.left) * pad.width / rect.width,
             y: (event.clientY - rect.top) * pad.height / rect.height,
             p: event.pointerType === "pen" && event.pressure > 0 ? event.pressure : 0.5 };
  }

  function stroke(from, to) {
    // MNIST strokes are about 2.5 of 28 pixels wide; a pen's pressure thins or thickens them
    const width = pad.width * (2.4 / 28) * (0.6 + 0.8 * to.p);
    ctx.strokeStyle = tool === "eraser" ? "#000" : "#fff";
    ctx.lineWidth = tool === "eraser" ? width * 1.6 : width;
    ctx.lineCap = "round"; ctx.lineJoin = "round";
    ctx.beginPath(); ctx.moveTo(from.x, from.y); ctx.lineTo(to.x, to.y); ctx.stroke();
  }

  pad.addEventListener("pointerdown", (event) => {
    event.preventDefault();
    pad.setPointerCapture(event.pointerId);
    snapshot();
    drawing = true; last = point(event);
    stroke(last, last);
    changed(event);
  });
  pad.addEventListener("pointermove", (event) => {
    if (!drawing) return;
    event.preventDefault();
    const events = event.getCoalescedEvents ? event.getCoalescedEvents() : [event];
    for (const e of events.length ? events : [event]) { const p = point(e); stroke(last, p); last = p; }
    changed(event);
  });
  const end = () => { drawing = false; last = null; schedulePause(); };
  pad.addEventListener("pointerup", end);
  pad.addEventListener("pointercancel", end);

  function changed(event) {
    stats.lastStroke = event ? event.timeStamp : performance.now();
    // send at once (pointer events already come once a frame); the server keeps only the
    // latest frame, so a slow machine skips updates instead of falling behind
    if (performance.now() - lastSend >= 8) send();
    else if (!scheduled) { scheduled = true; requestAnimationFrame(() => { scheduled = false; send(); }); }
    schedulePause();
  }

  function schedulePause() {
    clearTimeout(pauseTimer);
    pauseTimer = setTimeout(sendPause, 250);
  }

  // the pad at the model's input size: the ink's bounding square when centring (so a small
  // drawing keeps its detail), else the whole pad; each output pixel averages its source box
  function input() {
    const [channels, h, w] = hello.input;
    const centre = $("centre").checked;
    const full = ctx.getImageData(0, 0, pad.width, pad.height);
    let x0 = 0, y0 = 0, size = pad.width, sizeY = pad.height;
    if (centre) {
      let minX = pad.width, minY = pad.height, maxX = -1, maxY = -1;
      for (let y = 0; y < pad.height; y++) {
        for (let x = 0; x < pad.width; x++) {
          if (full.data[(y * pad.width + x) * 4] > 8) {
            if (x < minX) minX = x; if (x > maxX) maxX = x;
            if (y < minY) minY = y; if (y > maxY) maxY = y;
          }
        }
      }
      if (maxX >= 0) {
        size = sizeY = Math.max(maxX - minX, maxY - minY) + 1 + 8;
        x0 = Math.round((minX + maxX) / 2 - size / 2); y0 = Math.round((minY + maxY) / 2 - size / 2);
      }
    }
    const c = channels === 3 ? 3 : 1;
    const pixels = new Uint8Array(h * w * c);
    for (let oy = 0; oy < h; oy++) {
      const ya = y0 + Math.floor(oy * sizeY / h), yb = Math.max(ya + 1, y0 + Math.floor((oy + 1) * sizeY / h));
      for (let ox = 0; ox < w; ox++) {
        const xa = x0 + Math.floor(ox * size / w), xb = Math.max(xa + 1, x0 + Math.floor((ox + 1) * size / w));
        for (let k = 0; k < c; k++) {
          let sum = 0, n = 0;
          for (let y = ya; y < yb; y++) {
            for (let x = xa; x < xb; x++) {
              n++;
              if (x >= 0 && y >= 0 && x < pad.width && y < pad.height) sum += full.data[(y * pad.width + x) * 4 + k];
            }
          }
          pixels[(oy * w + ox) * c + k] = Math.round(sum / n);
        }
      }
    }
    return { pixels, h, w, centre };
  }

  function send() {
    if (!hello || !socket || socket.readyState !== WebSocket.OPEN) return;
    latestInput = input();
    lastSend = performance.now();
    seq += 1;
    stats.sent = seq;
    sent.set(seq, { at: performance.now(), stroke: stats.lastStroke });
    if (sent.size > 200) sent.delete(sent.keys().next().value);
    socket.send(Live.imageFrame(Live.DRAW, seq, latestInput.pixels, latestInput.h, latestInput.w, latestInput.centre));
  }

  function sendPause() {
    if (!hello || !socket || socket.readyState !== WebSocket.OPEN || !latestInput) return;
    const method = Math.max(0, Live.METHODS.indexOf($("method").value));
    socket.send(Live.imageFrame(Live.EXPLAIN, seq, latestInput.pixels, latestInput.h, latestInput.w, latestInput.centre, method));
  }

  // --- answers -----------------------------------------------------------------------------------
  function onAnswer(frame) {
    stats.answers += 1;
    stats.serverMs.push(frame.serverMs);
    if (stats.serverMs.length > 1000) stats.serverMs.shift();
    Live.showImage($("seen"), frame.seen, null);
    if (frame.probabilities) showPrediction(frame.probabilities);
    if (frame.code) showCode(frame.code, frame.reconstruction);
    frame.maps.forEach((data, i) => drawLayer(layerViews[i], data));
    const overlay = $("overlay"); overlay.getContext("2d").clearRect(0, 0, overlay.width, overlay.height);
    $("why-note").textContent = "";
    const asked = sent.get(frame.seq);
    requestAnimationFrame(() => {  // the repainted page is on screen at the next frame
      if (asked) {
        const now = performance.now();
        stats.latencies.push({ roundTrip: now - asked.at, stroke: asked.stroke ? now - asked.stroke : null });
        if (stats.latencies.length > 5000) stats.latencies.shift();
      }
      stats.painted = frame.seq;
    });
    $("speed").textContent = `server ${frame.serverMs.toFixed(1)} ms per update`;
    status("connected");
  }

  function showPrediction(p) {
    const names = hello.class_names;
    let top = 0;
    for (let i = 1; i < p.length; i++) if (p[i] > p[top]) top = i;
    stats.predicted = top;
    stats.probabilities = Array.from(p);
    const head = $("top-class");
    head.textContent = `${names[top]}`;
    head.dataset.class = String(top);
    const bars = $("bars");
    if (bars.children.length !== p.length) {
      bars.textContent = "";
      names.forEach((name) => {
        const li = document.createElement("li");
        const label = document.createElement("span"), track = document.createElement("span");
        const bar = document.createElement("span"), value = document.createElement("span");
        label.textContent = name; track.className = "track"; bar.className = "bar"; value.className = "p";
        track.append(bar); li.append(label, track, value); bars.append(li);
      });
    }
    Array.from(bars.children).forEach((li, i) => {
      li.classList.toggle("top", i === top);
      li.children[1].firstChild.style.width = (100 * p[i]).toFixed(1) + "%";
      li.children[2].textContent = p[i].toFixed(3);
    });
  }

  function drawLayer(view, data) {
    const { layer, canvas, table } = view;
    const g = canvas.getContext("2d");
    if (layer.kind === "maps") {
      const [c, h, w] = layer.shape;
      const img = g.createImageData(canvas.width, canvas.height);
      img.data.fill(255);
      for (let k = 0; k < c; k++) {
        const x0 = (k % view.cols) * view.tileW, y0 = Math.floor(k / view.cols) * view.tileH;
        Live.paint(img, canvas.width, x0, y0, data, h, w, table, k * h * w, view.scale);
      }
      g.putImageData(img, 0, 0);
    } else {
      g.clearRect(0, 0, canvas.width, canvas.height);
      const zero = view.signed ? 127.5 : 0;
      for (let k = 0; k < data.length; k++) {
        const q = data[k], rgb = table[q];
        g.fillStyle = `rgb(${rgb[0]},${rgb[1]},${rgb[2]})`;
        const top = canvas.height * (1 - Math.max(q, zero) / 255), bottom = canvas.height * (1 - Math.min(q, zero) / 255);
        g.fillRect(k * view.barWidth, top, Math.max(1, view.barWidth - 1), Math.max(1, bottom - top));
      }
    }
  }

  function onExplanation(frame) {
    stats.explanations += 1;
    stats.explainedSeq = frame.seq;
    const method = $("method").value;
    const overlay = $("overlay");
    if (!method || frame.method !== method || frame.seq !== seq) return;
    const m = frame.map;
    overlay.width = m.w; overlay.height = m.h;
    const g = overlay.getContext("2d");
    const img = g.createImageData(m.w, m.h);
    const table = frame.signed ? hello.colours.signed : hello.colours.sequential;
    for (let i = 0; i < m.w * m.h; i++) {
      const q = m.data[i];
      const strength = frame.signed ? Math.abs(q - 127.5) / 127.5 : q / 255;
      img.data.set([...table[q], Math.round(255 * Math.min(1, strength * 1.4))], 4 * i);
    }
    g.putImageData(img, 0, 0);
    const nothing = frame.method === "gradcam"
      ? `: zero everywhere (no map of ${hello.gradcam_layer} raises this class's score here)`
      : ": zero everywhere (no pixel changes this class's score here)";
    $("why-note").textContent = `${Live.METHOD_TITLES[frame.method]} for class ${hello.class_names[frame.target]}` +
      (frame.bound === 0 ? nothing
        : frame.signed ? ": red raises the score, blue lowers it" : ": brighter pixels matter more");
  }

  function onAlike(frame) {
    stats.alike += 1;
    stats.alikeSeq = frame.seq;
    const box = $("alike");
    box.textContent = "";
    for (const item of frame.items) {
      const figure = document.createElement("figure");
      const canvas = document.createElement("canvas");
      Live.showImage(canvas, item.image, null);
      const caption = document.createElement("figcaption");
      caption.textContent = `${hello.class_names[item.label]} · #${item.index} · ${item.distance.toFixed(2)}`;
      figure.title = `training image ${item.index} (${hello.class_names[item.label]}), distance ${item.distance.toFixed(3)}: click to start from it`;
      figure.append(canvas, caption);
      figure.addEventListener("click", () => loadImage(`/api/image?part=train&index=${item.index}`));
      box.append(figure);
    }
    $("alike-note").textContent = `Training images nearest to this input in ${hello.alike_layer}'s space.`;
  }

  // --- starting images -------------------------------------------------------------------------
  async function loadImage(url, options) {
    const response = await fetch(url, options);
    const body = await response.json();
    if (!response.ok) { status("error: " + body.error, true); stats.errors.push(body.error); return; }
    putPixels(body.pixels, body.shape);
    $("centre").checked = false;  // an image from the data (or a file) is shown as it is
    $("origin").textContent = body.index !== undefined
      ? `${body.part} image ${body.index}, labelled ${body.class_name}: draw on it to edit it`
      : "your image, read as mapscope cnn predict --image reads it: draw on it to edit it";
    undo = [];
    changed();
  }

  function putPixels(values, shape) {
    const [h, w] = shape, c = shape.length === 3 ? shape[2] : 1;
    const small = document.createElement("canvas");
    small.width = w; small.height = h;
    const g = small.getContext("2d");
    const img = g.createImageData(w, h);
    for (let i = 0; i < h * w; i++) {
      const rgb = c === 3 ? [values[3 * i], values[3 * i + 1], values[3 * i + 2]] : [values[i], values[i], values[i]];
      img.data.set([...rgb, 255], 4 * i);
    }
    g.putImageData(img, 0, 0);
    ctx.imageSmoothingEnabled = false;
    ctx.drawImage(small, 0, 0, pad.width, pad.height);
  }

  $("load").addEventListener("click", () => loadImage(`/api/image?part=test&index=${encodeURIComponent($("index").value)}`));
  $("random").addEventListener("click", () => loadImage("/api/image?part=test"));
  $("random-class").addEventListener("click", () => loadImage(`/api/image?part=test&label=${$("class-pick").value}`));
  $("upload").addEventListener("change", () => {
    const file = $("upload").files[0];
    if (file) loadImage("/api/upload", { method: "POST", body: file });
  });
  $("clear").addEventListener("click", () => {
    snapshot(); clearPad(); $("centre").checked = hello ? hello.centre : true;
    $("origin").textContent = "Draw with a mouse, a finger or a pen.";
    $("alike").textContent = "";
    changed();
  });
  $("undo").addEventListener("click", () => { if (undo.length) { ctx.putImageData(undo.pop(), 0, 0); changed(); } });
  const pick = (name) => { tool = name; $("pen").setAttribute("aria-pressed", name === "pen"); $("eraser").setAttribute("aria-pressed", name === "eraser"); };
  $("pen").addEventListener("click", () => pick("pen"));
  $("eraser").addEventListener("click", () => pick("eraser"));
  $("centre").addEventListener("change", () => changed());
  $("method").addEventListener("change", () => { sendPause(); });
  document.addEventListener("keydown", (event) => {
    if (event.target.tagName === "INPUT" || event.target.tagName === "SELECT") return;
    if ((event.ctrlKey || event.metaKey) && event.key === "z") { event.preventDefault(); $("undo").click(); }
    else if (event.key === "p") pick("pen");
    else if (event.key === "e") pick("eraser");
    else if (event.key === "c") $("clear").click();
  });

  // --- autoencoder sliders ---------------------------------------------------------------------
  function setUpLatent() {
    $("ae-panel").hidden = false;
    const latent = hello.latent;
    const make = (box, label, min, max, step, start, onInput) => {
      const name = document.createElement("span"), slider = document.createElement("input"), out = document.createElement("output");
      name.textContent = label;
      Object.assign(slider, { type: "range", min, max, step, value: start });
      slider.setAttribute("aria-label", label);
      out.textContent = Number(start).toFixed(2);
      slider.addEventListener("input", () => { out.textContent = Number(slider.value).toFixed(2); onInput(); });
      box.append(name, slider, out);
      return { slider, out };
    };
    const box = $("latent-sliders");
    latentSliders = latent.mean.map((mean, i) => {
      const sd = Math.max(latent.std[i], 1e-3);
      return make(box, `z${i}`, mean - 3 * sd, mean + 3 * sd, sd / 50, mean, () => sendDecode(0));
    });
    const axes = $("axis-sliders");
    axisSliders = latent.explained.map((share, i) =>
      make(axes, `axis ${i + 1} (${(100 * share).toFixed(0)}%)`, -3, 3, 0.02, 0, () => sendDecode(1)));
  }
  let latentSliders = [], axisSliders = [];
  let decodeSeq = 0;

  function sendDecode(mode) {
    if (!socket || socket.readyState !== WebSocket.OPEN) return;
    const values = (mode === 0 ? latentSliders : axisSliders).map((s) => Number(s.slider.value));
    decodeSeq += 1;
    socket.send(Live.decodeFrame(decodeSeq, mode, values));
  }

  function showCode(code, reconstruction) {
    Live.showImage($("recon"), reconstruction, null);
    code.forEach((v, i) => { latentSliders[i].slider.value = v; latentSliders[i].out.textContent = v.toFixed(2); });
  }

  function onDecoded(frame) {
    stats.decoded += 1;
    Live.showImage($("recon"), frame.image, null);
    frame.code.forEach((v, i) => { latentSliders[i].slider.value = v; latentSliders[i].out.textContent = v.toFixed(2); });
    stats.decodedMean = frame.image.data.reduce((a, b) => a + b, 0) / frame.image.data.length;
  }

  connect();
})();
