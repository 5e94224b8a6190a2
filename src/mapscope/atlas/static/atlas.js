// The atlas's only script: sorting and filtering a layer's tiles (their state kept in the
// address, so Back and a shared link restore it), and arrow keys between units.
(function () {
  "use strict";

  // Unit pages: left and right arrows open the previous and next unit.
  document.addEventListener("keydown", function (event) {
    const target = event.target;
    if (event.altKey || event.ctrlKey || event.metaKey || event.shiftKey) return;
    if (target && /^(INPUT|SELECT|TEXTAREA)$/.test(target.tagName)) return;
    const rel = { ArrowLeft: "prev", ArrowRight: "next" }[event.key];
    const link = rel && document.querySelector("a[rel=" + rel + "]");
    if (link) {
      event.preventDefault();
      window.location.href = link.href;
    }
  });

  const data = document.getElementById("units-data");
  const tiles = document.getElementById("tiles");
  if (!data || !tiles) return;
  const units = JSON.parse(data.textContent);
  const sort = document.getElementById("sort");
  const filter = document.getElementById("filter");
  const cls = document.getElementById("cls");
  const minsel = document.getElementById("minsel");
  const minselValue = document.getElementById("minsel-value");
  const jump = document.getElementById("goto");
  const shown = document.getElementById("shown");
  const quiet = function (u) { return u.dead || u.rare; };

  function keep(u) {
    const f = filter.value;
    const kind = f === "all" || (f === "dead" && u.dead) || (f === "rare" && u.rare) ||
      (f === "alive" && !u.dead);
    const preferred = cls.value === "" || u.best_class === parseInt(cls.value, 10);
    return kind && preferred && u.selectivity >= parseFloat(minsel.value);
  }

  function order(a, b) {
    const key = sort.value;
    if (key === "unit") return a.unit - b.unit;
    if (key === "selectivity" && quiet(a) !== quiet(b)) return quiet(a) ? 1 : -1;
    return (b[key] - a[key]) || (a.unit - b.unit);
  }

  function update() {
    minselValue.textContent = parseFloat(minsel.value).toFixed(2);
    let count = 0;
    for (const u of units.slice().sort(order)) {
      const tile = document.getElementById("unit-" + u.unit);
      tile.hidden = !keep(u);
      count += tile.hidden ? 0 : 1;
      tiles.appendChild(tile); // moves the tile: the DOM order becomes the sorted order
    }
    shown.textContent = count + " of " + units.length + " shown";
  }

  function save() {
    const state = new URLSearchParams();
    if (sort.value !== "unit") state.set("sort", sort.value);
    if (filter.value !== "all") state.set("filter", filter.value);
    if (cls.value !== "") state.set("class", cls.value);
    if (parseFloat(minsel.value) > 0) state.set("minsel", minsel.value);
    const text = state.toString();
    window.location.replace("#" + text); // no new history entry; Back leaves the page
  }

  function restore() {
    const state = new URLSearchParams(window.location.hash.slice(1));
    const pick = function (select, value, fallback) {
      const ok = Array.from(select.options).some(function (o) { return o.value === value; });
      select.value = ok ? value : fallback;
    };
    pick(sort, state.get("sort") || "unit", "unit");
    pick(filter, state.get("filter") || "all", "all");
    pick(cls, state.get("class") || "", "");
    const least = parseFloat(state.get("minsel") || "0");
    minsel.value = String(Number.isFinite(least) ? Math.min(Math.max(least, 0), 1) : 0);
    update();
  }

  function changed() {
    update();
    save();
  }
  sort.addEventListener("change", changed);
  filter.addEventListener("change", changed);
  cls.addEventListener("change", changed);
  minsel.addEventListener("input", changed);
  jump.addEventListener("keydown", function (event) {
    const unit = parseInt(jump.value, 10);
    if (event.key === "Enter" && unit >= 0 && unit < units.length) {
      window.location.href = "units/" + unit + ".html";
    }
  });
  window.addEventListener("hashchange", restore);
  window.addEventListener("pageshow", restore); // a page restored by Back shows its own state
  restore();
})();
