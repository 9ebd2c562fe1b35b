// conveyor dashboard: progressive enhancement only. Every page works without
// this script; with it, the overview refreshes itself and draws its chart,
// and pages of unfinished jobs reload until the job ends.
(function () {
  "use strict";
  document.documentElement.classList.add("js");

  function lookup(data, path) {
    return path.split(".").reduce(function (v, k) { return v == null ? v : v[k]; }, data);
  }

  function refreshLive(url) {
    fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (data) {
        if (!data) return;
        document.querySelectorAll("[data-live]").forEach(function (el) {
          var v = lookup(data, el.getAttribute("data-live"));
          if (v !== undefined && v !== null) el.textContent = String(v);
        });
      })
      .catch(function () { /* the next round tries again */ });
  }

  function cssVar(name) {
    return getComputedStyle(document.documentElement).getPropertyValue(name).trim();
  }

  function drawChart(el) {
    if (typeof uPlot === "undefined") return;
    var plot = null;
    function load() {
      fetch(el.getAttribute("data-source"), { credentials: "same-origin" })
        .then(function (r) { return r.ok ? r.json() : null; })
        .then(function (h) {
          if (!h) return;
          var data = [h.minutes.map(function (m) { return m * 60; }), h.succeeded, h.failed];
          if (plot) { plot.setData(data); return; }
          plot = new uPlot({
            width: Math.max(el.clientWidth, 300),
            height: 240,
            scales: { x: { time: true } },
            axes: [{ stroke: cssVar("--muted"), grid: { stroke: cssVar("--line") } },
                   { stroke: cssVar("--muted"), grid: { stroke: cssVar("--line") } }],
            series: [{}, { label: "succeeded / min", stroke: cssVar("--ok"), width: 2, points: { show: false } },
                         { label: "failed / min", stroke: cssVar("--bad"), width: 2, points: { show: false } }]
          }, data, el);
        })
        .catch(function () { /* the next round tries again */ });
    }
    load();
    setInterval(load, 5000);
    window.addEventListener("resize", function () {
      if (plot) plot.setSize({ width: Math.max(el.clientWidth, 300), height: 240 });
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    var body = document.body;
    var live = body.getAttribute("data-live-source");
    if (live) setInterval(function () { refreshLive(live); }, 2000);
    var chart = document.getElementById("chart");
    if (chart) drawChart(chart);
    var reload = parseInt(body.getAttribute("data-refresh") || "0", 10);
    if (reload > 0) setTimeout(function () { window.location.reload(); }, reload);
  });
})();
