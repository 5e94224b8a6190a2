// Sorting and filtering the tiles of a layer page: plain JavaScript over the embedded JSON.
(function () {
  "use strict";
  const data = document.getElementById("units-data");
  const tiles = document.getElementById("tiles");
  if (!data || !tiles) return;
  const units = JSON.parse(data.textContent);
  const sort = document.getElementById("sort");
  const filter = document.getElementById("filter");
  const minsel = document.getElementById("minsel");
  const minselValue = document.getElementById("minsel-value");
  const shown = document.getElementById("shown");

  function update() {
    const key = sort.value;
    const ordered = units.slice().sort(function (a, b) {
      return key === "unit" ? a.unit - b.unit : (b[key] - a[key]) || (a.unit - b.unit);
    });
    const least = parseFloat(minsel.value);
    minselValue.textContent = least.toFixed(2);
    let count = 0;
    for (const u of ordered) {
      const tile = document.getElementById("unit-" + u.unit);
      const visible = (filter.value === "all" || (filter.value === "dead") === u.dead) &&
        u.selectivity >= least;
      tile.hidden = !visible;
      count += visible ? 1 : 0;
      tiles.appendChild(tile); // moves the tile: the DOM order becomes the sorted order
    }
    shown.textContent = count + " of " + units.length + " shown";
  }
  sort.addEventListener("change", update);
  filter.addEventListener("change", update);
  minsel.addEventListener("input", update);
  update();
})();
