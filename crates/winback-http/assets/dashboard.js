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
    var series = [{}];
    data.names.forEach(function (name, i) {
      series.push({ label: name, stroke: colours[i % colours.length], width: 2,
        value: function (u, v) { return v == null ? "-" : v.toFixed(1) + "%"; } });
    });
    var width = Math.min(el.clientWidth || 720, 900);
    new uPlot({
      title: el.getAttribute("data-title") || "",
      width: width, height: 260,
      series: series,
      points: { show: data.x.length < 40, size: 6 },
      axes: [{}, { values: function (u, vals) { return vals.map(function (v) { return v + "%"; }); } }],
    }, [data.x].concat(data.series), el);
    el.setAttribute("data-drawn", "true");
  }
  document.querySelectorAll("[data-chart]").forEach(draw);
})();
