// The atlas's image viewer: any image the site shows, run through the network in the page (as
// CNN Explainer does). images/data.js holds the pixels of every image shown and the numbers
// the atlas computed (probabilities); images/model.js holds the network as a chain of plain
// layers, exported and checked against torch when the atlas was built (atlas/network.py).
(function () {
  "use strict";
  const site = window.ATLAS_DATA;
  const network = window.ATLAS_NETWORK || null;
  const $ = function (id) { return document.getElementById(id); };

  function decode(text, Type) {
    const bytes = Uint8Array.from(atob(text), function (c) { return c.charCodeAt(0); });
    return Type === Uint8Array ? bytes : new Type(bytes.buffer);
  }

  const arrays = {};
  if (network) {
    for (const key in network.arrays) arrays[key] = decode(network.arrays[key].data, Float32Array);
  }
  const shapeOf = function (key) { return network.arrays[key].shape; };

  // ---- the forward pass: tensors are {data: Float32Array, shape: [C, H, W] or [F]} ----
  // Every (output, input, weight) index triple of a convolution, in order: the forward pass
  // and the gradient walk the same taps.
  function convTaps(inShape, step, visit) {
    const [O, C, KH, KW] = shapeOf(step.weight), [, H, W] = inShape;
    const [sy, sx] = step.stride, [py, px] = step.padding;
    const OH = Math.floor((H + 2 * py - KH) / sy) + 1, OW = Math.floor((W + 2 * px - KW) / sx) + 1;
    for (let o = 0; o < O; o++) {
      for (let y = 0; y < OH; y++) {
        for (let xx = 0; xx < OW; xx++) {
          const at = (o * OH + y) * OW + xx;
          for (let c = 0; c < C; c++) {
            for (let ky = 0; ky < KH; ky++) {
              const iy = y * sy - py + ky;
              if (iy < 0 || iy >= H) continue;
              for (let kx = 0; kx < KW; kx++) {
                const ix = xx * sx - px + kx;
                if (ix >= 0 && ix < W) visit(at, (c * H + iy) * W + ix, ((o * C + c) * KH + ky) * KW + kx);
              }
            }
          }
        }
      }
    }
    return [O, OH, OW];
  }

  function conv(x, step) {
    const w = arrays[step.weight], b = step.bias ? arrays[step.bias] : null;
    const [O, , KH, KW] = shapeOf(step.weight), [, H, W] = x.shape;
    const OH = Math.floor((H + 2 * step.padding[0] - KH) / step.stride[0]) + 1;
    const OW = Math.floor((W + 2 * step.padding[1] - KW) / step.stride[1]) + 1;
    const out = new Float32Array(O * OH * OW);
    if (b) for (let i = 0; i < out.length; i++) out[i] = b[Math.floor(i / (OH * OW))];
    const shape = convTaps(x.shape, step, function (o, i, k) { out[o] += w[k] * x.data[i]; });
    return { data: out, shape: shape };
  }

  function convBack(g, x, step) {
    const w = arrays[step.weight], gx = new Float32Array(x.data.length);
    convTaps(x.shape, step, function (o, i, k) { gx[i] += w[k] * g.data[o]; });
    return { data: gx, shape: x.shape };
  }

  function linear(x, step) {
    const w = arrays[step.weight], b = step.bias ? arrays[step.bias] : null;
    const [O, I] = shapeOf(step.weight), out = new Float32Array(O);
    for (let o = 0; o < O; o++) {
      let sum = b ? b[o] : 0;
      for (let i = 0; i < I; i++) sum += w[o * I + i] * x.data[i];
      out[o] = sum;
    }
    return { data: out, shape: [O] };
  }

  function linearBack(g, x, step) {
    const w = arrays[step.weight], [O, I] = shapeOf(step.weight), gx = new Float32Array(I);
    for (let o = 0; o < O; o++) {
      const go = g.data[o];
      if (go === 0) continue;
      for (let i = 0; i < I; i++) gx[i] += w[o * I + i] * go;
    }
    return { data: gx, shape: x.shape };
  }

  function pool(x, step, max) {
    const [C, H, W] = x.shape, [kh, kw] = step.kernel, [sy, sx] = step.stride;
    const OH = Math.floor((H - kh) / sy) + 1, OW = Math.floor((W - kw) / sx) + 1;
    const out = new Float32Array(C * OH * OW), from = new Int32Array(C * OH * OW);
    for (let c = 0; c < C; c++) {
      for (let y = 0; y < OH; y++) {
        for (let xx = 0; xx < OW; xx++) {
          let best = -Infinity, at = -1, sum = 0;
          for (let ky = 0; ky < kh; ky++) {
            for (let kx = 0; kx < kw; kx++) {
              const i = (c * H + y * sy + ky) * W + xx * sx + kx, v = x.data[i];
              sum += v;
              if (v > best) { best = v; at = i; }
            }
          }
          const o = (c * OH + y) * OW + xx;
          out[o] = max ? best : sum / (kh * kw);
          from[o] = at;
        }
      }
    }
    return { data: out, shape: [C, OH, OW], from: from };
  }

  function poolBack(g, x, y, step, max) {
    const gx = new Float32Array(x.data.length), [C, H, W] = x.shape, [, OH, OW] = y.shape;
    const [kh, kw] = step.kernel, [sy, sx] = step.stride;
    for (let c = 0; c < C; c++) {
      for (let yy = 0; yy < OH; yy++) {
        for (let xx = 0; xx < OW; xx++) {
          const o = (c * OH + yy) * OW + xx, go = g.data[o];
          if (max) { gx[y.from[o]] += go; continue; }
          for (let ky = 0; ky < kh; ky++) {
            for (let kx = 0; kx < kw; kx++) gx[(c * H + yy * sy + ky) * W + xx * sx + kx] += go / (kh * kw);
          }
        }
      }
    }
    return { data: gx, shape: x.shape };
  }

  const SELU = [1.0507009873554805, 1.6732632423543772];
  function pointwise(x, f) {
    const out = new Float32Array(x.data.length);
    for (let i = 0; i < out.length; i++) out[i] = f(x.data[i]);
    return { data: out, shape: x.shape };
  }

  function affine(x, step) {
    const scale = arrays[step.scale], shift = arrays[step.shift];
    const per = x.shape.length === 3 ? x.shape[1] * x.shape[2] : 1, out = new Float32Array(x.data.length);
    for (let i = 0; i < out.length; i++) {
      const c = Math.floor(i / per) % scale.length;
      out[i] = x.data[i] * scale[c] + shift[c];
    }
    return { data: out, shape: x.shape };
  }

  function forward(input) {
    const seen = [];
    let x = input;
    for (const step of network.steps) {
      const op = step.op;
      let y;
      if (op === "conv") y = conv(x, step);
      else if (op === "linear") y = linear(x, step);
      else if (op === "maxpool" || op === "avgpool") y = pool(x, step, op === "maxpool");
      else if (op === "affine") y = affine(x, step);
      else if (op === "flatten") y = { data: x.data, shape: [x.data.length] };
      else if (op === "relu") y = pointwise(x, function (v) { return v > 0 ? v : 0; });
      else if (op === "sigmoid") y = pointwise(x, function (v) { return 1 / (1 + Math.exp(-v)); });
      else if (op === "tanh") y = pointwise(x, Math.tanh);
      else if (op === "elu") y = pointwise(x, function (v) { return v > 0 ? v : step.alpha * (Math.exp(v) - 1); });
      else if (op === "selu") y = pointwise(x, function (v) { return SELU[0] * (v > 0 ? v : SELU[1] * (Math.exp(v) - 1)); });
      else if (op === "leaky") y = pointwise(x, function (v) { return v > 0 ? v : step.slope * v; });
      else y = x; // identity, dropout
      seen.push({ input: x, output: y, step: step });
      x = y;
    }
    return seen;
  }

  // The gradient of one output with respect to the input: saliency, |gradient| summed over
  // channels (what `mapscope attribute --method saliency` computes with Captum).
  function saliency(seen, target) {
    const last = seen[seen.length - 1].output;
    let g = { data: new Float32Array(last.data.length), shape: last.shape };
    g.data[target] = 1;
    for (let k = seen.length - 1; k >= 0; k--) {
      const { input: x, output: y, step } = seen[k], op = step.op;
      if (op === "conv") g = convBack(g, x, step);
      else if (op === "linear") g = linearBack(g, x, step);
      else if (op === "maxpool" || op === "avgpool") g = poolBack(g, x, y, step, op === "maxpool");
      else if (op === "flatten") g = { data: g.data, shape: x.shape };
      else {
        const d = new Float32Array(g.data.length);
        for (let i = 0; i < d.length; i++) {
          const v = x.data[i], out = y.data[i];
          let slope = 1;
          if (op === "relu") slope = v > 0 ? 1 : 0;
          else if (op === "sigmoid") slope = out * (1 - out);
          else if (op === "tanh") slope = 1 - out * out;
          else if (op === "elu") slope = v > 0 ? 1 : out + step.alpha;
          else if (op === "selu") slope = v > 0 ? SELU[0] : SELU[0] * SELU[1] * Math.exp(v);
          else if (op === "leaky") slope = v > 0 ? 1 : step.slope;
          else if (op === "affine") {
            const per = x.shape.length === 3 ? x.shape[1] * x.shape[2] : 1, scale = arrays[step.scale];
            slope = scale[Math.floor(i / per) % scale.length];
          }
          d[i] = g.data[i] * slope;
        }
        g = { data: d, shape: x.shape };
      }
    }
    const [C, H, W] = network.input_shape.length === 3 ? network.input_shape : [1, site.images.height, site.images.width];
    const out = new Float32Array(H * W);
    for (let c = 0; c < C; c++) for (let i = 0; i < H * W; i++) out[i] += Math.abs(g.data[c * H * W + i]);
    return out;
  }

  // ---- drawing ----
  function paint(canvas, values, width, height, lo, hi, table) {
    canvas.width = width;
    canvas.height = height;
    const context = canvas.getContext("2d"), picture = context.createImageData(width, height);
    const span = hi - lo || 1;
    for (let i = 0; i < width * height; i++) {
      const level = Math.max(0, Math.min(255, Math.round(255 * (values[i] - lo) / span)));
      picture.data[4 * i] = table[3 * level];
      picture.data[4 * i + 1] = table[3 * level + 1];
      picture.data[4 * i + 2] = table[3 * level + 2];
      picture.data[4 * i + 3] = 255;
    }
    context.putImageData(picture, 0, 0);
  }

  function pixelsOf(position) {
    const im = site.images, size = im.channels * im.height * im.width;
    return site.pixelBytes.subarray(position * size, (position + 1) * size);
  }

  function drawImage(canvas, pixels) {
    const im = site.images, n = im.height * im.width;
    canvas.width = im.width;
    canvas.height = im.height;
    const context = canvas.getContext("2d"), picture = context.createImageData(im.width, im.height);
    for (let i = 0; i < n; i++) {
      for (let k = 0; k < 3; k++) picture.data[4 * i + k] = pixels[(im.channels === 3 ? k : 0) * n + i];
      picture.data[4 * i + 3] = 255;
    }
    context.putImageData(picture, 0, 0);
  }

  function element(tag, attributes, text) {
    const node = document.createElement(tag);
    for (const key in attributes || {}) node.setAttribute(key, attributes[key]);
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function fmt(v) { return Math.abs(v) >= 1000 || (Math.abs(v) < 0.01 && v !== 0) ? v.toExponential(2) : v.toPrecision(3); }

  function scaleLegend(lo, hi, bar) {
    const span = element("span", { class: "cscale" });
    span.append(element("span", { class: "tick" }, fmt(lo)));
    span.append(element("img", { class: "cbar", src: bar, alt: "colour scale from " + fmt(lo) + " to " + fmt(hi), width: "96", height: "10" }));
    span.append(element("span", { class: "tick" }, fmt(hi)));
    return span;
  }

  function showLayers(seen) {
    const box = $("layers");
    box.textContent = "";
    for (const layer of site.layers) {
      const out = seen[network.ends[layer.name]].output;
      const section = element("section", { class: "layer-maps", "data-layer": layer.name });
      const heading = element("h3");
      heading.append(element("a", { href: "../layers/" + layer.name + "/index.html" }, layer.name));
      section.append(heading);
      const [lo, hi] = layer.scale;
      const per = out.shape.length === 3 ? out.shape[1] * out.shape[2] : 1;
      const means = [];
      for (let u = 0; u < layer.units; u++) {
        let sum = 0;
        for (let i = 0; i < per; i++) sum += out.data[u * per + i];
        means.push(sum / per);
      }
      const order = means.map(function (v, u) { return u; }).sort(function (a, b) { return means[b] - means[a] || a - b; });
      const line = element("p", { class: "small" }, "most active (map mean): ");
      for (const u of order.slice(0, 8)) {
        line.append(element("a", { href: "../layers/" + layer.name + "/units/" + u + ".html", class: "active-unit" }, "#" + u + " (" + fmt(means[u]) + ")"));
        line.append(" ");
      }
      section.append(line);
      const grid = element("div", { class: "mapgrid" + (out.shape.length === 3 ? "" : " nodes") });
      for (let u = 0; u < layer.units; u++) {
        const link = element("a", { href: "../layers/" + layer.name + "/units/" + u + ".html", title: layer.name + " #" + u + ": map mean " + fmt(means[u]) });
        const canvas = element("canvas", { class: "px", "data-unit": String(u) });
        if (out.shape.length === 3) paint(canvas, out.data.subarray(u * per, (u + 1) * per), out.shape[2], out.shape[1], lo, hi, site.colours[layer.colours]);
        else paint(canvas, [out.data[u]], 1, 1, lo, hi, site.colours[layer.colours]);
        link.append(canvas);
        grid.append(link);
      }
      section.append(grid);
      section.append(scaleLegend(lo, hi, site.bars[layer.colours]));
      box.append(section);
    }
  }

  function bars(box, values) {
    box.textContent = "";
    values.forEach(function (p, c) {
      const row = element("div", { class: "prob" });
      row.append(element("a", { href: "../classes/" + c + ".html" }, site.classNames[c]));
      const bar = element("span", { class: "probbar" });
      bar.style.width = (100 * p).toFixed(1) + "%";
      row.append(bar);
      row.append(element("span", { class: "tick" }, p.toFixed(3)));
      box.append(row);
    });
  }

  function show() {
    const index = parseInt(window.location.hash.slice(1), 10);
    const position = site.images.index.indexOf(index);
    const title = $("title");
    if (!(position >= 0)) {
      title.textContent = "No such image";
      $("lead").textContent = "Image " + window.location.hash.slice(1) + " is not among the " +
        site.images.index.length + " images this atlas shows. Pick one from a unit, class or gallery page, or draw your own in `mapscope live`.";
      $("content").hidden = true;
      return;
    }
    $("content").hidden = false;
    const label = site.images.labels[position];
    title.textContent = site.split + " image " + index;
    document.title = site.split + " image " + index + " · mapscope atlas";
    const lead = $("lead");
    lead.textContent = "";
    lead.append("True class ");
    lead.append(element("a", { href: "../classes/" + label + ".html" }, site.classNames[label]));
    const probabilities = site.probabilities ? site.probabilities[position] : null;
    if (probabilities) {
      const predicted = probabilities.indexOf(Math.max.apply(null, probabilities));
      lead.append("; predicted ");
      lead.append(element("a", { href: "../classes/" + predicted + ".html" }, site.classNames[predicted]));
      lead.append(" with probability " + probabilities[predicted].toFixed(3));
      if (predicted !== label) lead.append(element("b", { class: "deadmark" }, " wrong"));
      bars($("probabilities"), probabilities);
    }
    lead.append(". ");
    if (site.images.pages[position]) lead.append(element("a", { href: index + ".html", id: "full-page" }, "Its page, with Captum's attributions."));
    const pixels = pixelsOf(position);
    drawImage($("image"), pixels);
    drawImage($("under"), pixels);
    if (!network) {
      $("maps-reason").hidden = false;
      document.body.dataset.ready = String(index);
      return;
    }
    const im = site.images, n = im.channels * im.height * im.width, input = new Float32Array(n);
    for (let i = 0; i < n; i++) input[i] = site.affine.a[i] * pixels[i] + site.affine.b[i];
    const shape = network.input_shape.length === 3 ? network.input_shape : [n];
    const seen = forward({ data: input, shape: shape });
    showLayers(seen);
    if (probabilities) {
      const target = probabilities.indexOf(Math.max.apply(null, probabilities));
      const heat = saliency(seen, target);
      // the scale ends as on the image pages (site.clipped_bound): at the largest value,
      // unless that is more than twice the 99th percentile
      const sorted = Array.from(heat).sort(function (a, b) { return a - b; });
      const largest = sorted[sorted.length - 1], p99 = sorted[Math.floor(0.99 * (sorted.length - 1))];
      const top = (p99 > 0 ? Math.min(largest, 2 * p99) : largest) || 1;
      paint($("saliency"), heat, im.width, im.height, 0, top, site.colours.inferno);
      const legend = $("saliency-scale");
      legend.textContent = "";
      legend.append(scaleLegend(0, top, site.bars.inferno));
      window.ATLAS_VIEW = { index: index, saliency: heat, seen: seen };
    }
    document.body.dataset.ready = String(index);
  }

  function inflate(text) {
    const stream = new Blob([decode(text, Uint8Array)]).stream().pipeThrough(new DecompressionStream("deflate"));
    return new Response(stream).arrayBuffer().then(function (buffer) { return new Uint8Array(buffer); });
  }

  if (network) {
    site.affine = { a: decode(network.affine.a, Float32Array), b: decode(network.affine.b, Float32Array) };
  }
  inflate(site.images.pixels).then(function (bytes) {
    site.pixelBytes = bytes;
    window.addEventListener("hashchange", show);
    show();
  });
})();
