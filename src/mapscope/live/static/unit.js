// mapscope live: one unit's page (its OIP, and its map on the drawing the user came from).
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const parts = location.pathname.split("/");  // /unit/LAYER/UNIT
  const layerName = decodeURIComponent(parts[2]), unit = Number(parts[3]);
  const state = { ready: false, mapShown: false, oipLoaded: false };
  window.mapscopeUnit = state;
  $("title").textContent = `${layerName} unit ${unit}`;
  document.title = `mapscope live: ${layerName} unit ${unit}`;

  const oip = $("oip");
  oip.addEventListener("load", () => { state.oipLoaded = true; $("oip-note").textContent = "The input that drives this unit hardest, found by gradient ascent from smooth noise (searched once, then kept)."; });
  oip.addEventListener("error", () => { $("oip-note").textContent = "The OIP search failed; see the server's output."; });
  oip.src = `/api/oip/${encodeURIComponent(layerName)}/${unit}.png`;

  const stored = JSON.parse(sessionStorage.getItem("mapscope-live-input") || "null");
  const socket = new WebSocket(Live.socketUrl());
  socket.binaryType = "arraybuffer";
  let hello = null, index = -1;

  socket.onmessage = (event) => {
    if (typeof event.data === "string") {
      const message = JSON.parse(event.data);
      if (message.type === "error") { $("status").textContent = "error: " + message.message; return; }
      if (message.type !== "hello") return;
      hello = message;
      index = hello.layers.findIndex((l) => l.name === layerName);
      const layer = hello.layers[index];
      const link = (id, u) => {
        const a = $(id);
        if (u >= 0 && u < layer.shape[0]) a.href = `/unit/${encodeURIComponent(layerName)}/${u}`; else a.hidden = true;
      };
      link("previous", unit - 1); link("next", unit + 1);
      const [, h, w] = hello.input;
      const pixels = stored ? Uint8Array.from(atob(stored.pixels), (c) => c.charCodeAt(0)) : new Uint8Array(h * w);
      const centre = stored ? stored.centre : false;
      if (!stored) $("status").textContent = "no drawing yet: showing a blank input";
      socket.send(Live.imageFrame(Live.DRAW, 1, pixels, h, w, centre));
      return;
    }
    const frame = Live.decode(event.data, hello.layers);
    if (frame.kind !== Live.ANSWER) return;
    const layer = hello.layers[index];
    const table = layer.lo < 0 ? hello.colours.signed : hello.colours.sequential;
    const data = frame.maps[index];
    const facts = [];
    if (layer.kind === "maps") {
      const [, h, w] = layer.shape;
      const slice = data.subarray(unit * h * w, (unit + 1) * h * w);
      Live.showImage($("map"), { h, w, c: 1, data: slice }, table);
      let sum = 0, max = 0;
      slice.forEach((q) => { const v = Live.value(layer, q); sum += v; max = Math.max(max, v); });
      facts.push(["map mean", Live.fmt(sum / slice.length)], ["map max", Live.fmt(max)], ["map size", `${h}×${w}`]);
    } else {
      Live.showImage($("map"), { h: 1, w: 1, c: 1, data: data.subarray(unit, unit + 1) }, table);
      facts.push(["value", Live.fmt(Live.value(layer, data[unit]))]);
    }
    if (frame.probabilities) {
      let top = 0;
      frame.probabilities.forEach((p, i) => { if (p > frame.probabilities[top]) top = i; });
      facts.push(["the drawing is read as", `${hello.class_names[top]} (${frame.probabilities[top].toFixed(3)})`]);
    }
    $("legend").append(Live.legend(layer, table));
    const dl = $("facts");
    facts.forEach(([k, v]) => { const dt = document.createElement("dt"), dd = document.createElement("dd"); dt.textContent = k; dd.textContent = v; dl.append(dt, dd); });
    Live.showImage($("input"), frame.raw, null);
    $("status").textContent = "";
    state.mapShown = true;
    state.ready = true;
  };
  $("back").addEventListener("click", (event) => { if (history.length > 1) { event.preventDefault(); history.back(); } });
})();
