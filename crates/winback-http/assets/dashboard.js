// winback dashboard: draws the charts whose data the server put in
// <script type="application/json"> blocks. No inline script anywhere: the
// Content Security Policy allows scripts from /admin/assets only.
(function () {
  "use strict";
  var colours = ["#2b7a4b", "#d9a21b", "#d0622a", "#9b2c2c", "#3b6ea8", "#7a4fa0", "#555", "#0f8b8d"];
  function draw(el) {
    var src = document.getElementById(el.getAttribute("data-chart"));
    if (!src || typeof uPlot === "undefined") { return; }
    var data = JSON.parse(src.textContent);
    if (!data.x || data.x.length === 0) { return; }
    // `unit` follows each value ("%" by default); `digits` after the point (1 by default).
    var unit = data.unit === undefined ? "%" : data.unit;
    var digits = data.digits === undefined ? 1 : data.digits;
    function fmt(v) { return v == null ? "-" : v.toFixed(digits) + unit; }
    var series = [{}];
    data.names.forEach(function (name, i) {
      series.push({ label: name, stroke: colours[i % colours.length], width: 2,
        dash: data.dashed && data.dashed[i] ? [6, 4] : undefined,
        value: function (u, v) { return fmt(v); } });
    });
    // As wide as its card allows (a phone is 390 px), never wider.
    var width = Math.max(240, Math.min(el.clientWidth || 720, 900));
    new uPlot({
      title: el.getAttribute("data-title") || "",
      width: width, height: 260,
      series: series,
      points: { show: data.x.length < 40, size: 6 },
      // Monthly data: one tick per month, labelled YYYY-MM.
      axes: [data.monthly
               ? { label: el.getAttribute("data-x-title") || "",
                   splits: function () { return data.x; },
                   values: function (u, vals) { return vals.map(function (v) { return new Date(v * 1000).toISOString().slice(0, 7); }); } }
               : { label: el.getAttribute("data-x-title") || "" },
             { label: el.getAttribute("data-y-title") || "",
               values: function (u, vals) { return vals.map(function (v) { return v + unit; }); } }],
    }, [data.x].concat(data.series), el);
    el.setAttribute("data-drawn", "true");
  }
  document.querySelectorAll("[data-chart]").forEach(draw);

  // Sortable tables: a header's button sorts the body by that column's data-v values;
  // aria-sort tells screen readers the order.
  function value(row, col, numeric) {
    var v = row.cells[col] ? row.cells[col].getAttribute("data-v") : null;
    if (!numeric) { return v || ""; }
    return v === null || v === "" ? -Infinity : Number(v);
  }
  document.querySelectorAll("table.sortable").forEach(function (table) {
    table.querySelectorAll("th button[data-sort]").forEach(function (button) {
      button.addEventListener("click", function () {
        var col = Number(button.getAttribute("data-col"));
        var numeric = button.getAttribute("data-sort") === "num";
        var th = button.parentNode;
        var ascending = th.getAttribute("aria-sort") !== "ascending";
        table.querySelectorAll("thead th").forEach(function (h) { h.removeAttribute("aria-sort"); });
        th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
        var body = table.tBodies[0];
        var rows = Array.prototype.slice.call(body.rows);
        rows.sort(function (a, b) {
          var x = value(a, col, numeric), y = value(b, col, numeric);
          var c = numeric ? (x < y ? -1 : x > y ? 1 : 0) : String(x).localeCompare(String(y));
          return ascending ? c : -c;
        });
        rows.forEach(function (r) { body.appendChild(r); });
      });
    });
  });
})();
