// citywatch review: keyboard review, map pan / zoom, cockpit counters. No framework.
(function () {
  "use strict";
  function typing(e) { var t = e.target.tagName; return t === "INPUT" || t === "TEXTAREA" || t === "SELECT"; }

  // Queue: j / k move, Enter opens; a click on a row opens it.
  var rows = Array.prototype.slice.call(document.querySelectorAll("table.queue tbody tr[data-href]"));
  var at = -1;
  function select(i) {
    if (!rows.length) return;
    if (at >= 0) rows[at].classList.remove("selected");
    at = Math.max(0, Math.min(rows.length - 1, i));
    rows[at].classList.add("selected");
    rows[at].scrollIntoView({ block: "nearest" });
  }
  rows.forEach(function (r, i) { r.addEventListener("click", function (e) { if (e.target.tagName !== "A") location.href = r.dataset.href; }); });

  // Case page: c / d / m pick the decision and focus the reason; j goes to the next case.
  var form = document.getElementById("decision-form");
  function pick(value) {
    if (!form) return;
    var input = form.querySelector('input[name="action"][value="' + value + '"]');
    if (input) { input.checked = true; document.getElementById("reason").focus(); }
  }
  document.addEventListener("keydown", function (e) {
    if (typing(e) || e.ctrlKey || e.metaKey || e.altKey) return;
    if (rows.length) {
      if (e.key === "j") { select(at + 1); e.preventDefault(); }
      else if (e.key === "k") { select(at - 1); e.preventDefault(); }
      else if (e.key === "Enter" && at >= 0) { location.href = rows[at].dataset.href; }
      return;
    }
    var head = document.querySelector(".case-head");
    if (!head) return;
    if (e.key === "c") { pick("confirm"); e.preventDefault(); }
    else if (e.key === "d") { pick("dismiss"); e.preventDefault(); }
    else if (e.key === "m") { pick("more_evidence"); e.preventDefault(); }
    else if (e.key === "j" && head.dataset.next) { location.href = head.dataset.next; }
    else if (e.key === "k") { history.back(); }
  });

  // Map: drag to pan, wheel / buttons / pinch to zoom, by changing the SVG viewBox.
  var svg = document.getElementById("district-map");
  if (svg) {
    var base = svg.getAttribute("viewBox").split(" ").map(Number), vb = base.slice();
    var apply = function () { svg.setAttribute("viewBox", vb.join(" ")); };
    var zoom = function (f, cx, cy) {
      cx = cx === undefined ? vb[0] + vb[2] / 2 : cx; cy = cy === undefined ? vb[1] + vb[3] / 2 : cy;
      vb = [cx - (cx - vb[0]) / f, cy - (cy - vb[1]) / f, vb[2] / f, vb[3] / f]; apply();
    };
    var toSvg = function (x, y) {
      var r = svg.getBoundingClientRect();
      return [vb[0] + (x - r.left) / r.width * vb[2], vb[1] + (y - r.top) / r.height * vb[3]];
    };
    svg.addEventListener("wheel", function (e) { e.preventDefault(); var p = toSvg(e.clientX, e.clientY); zoom(e.deltaY < 0 ? 1.25 : 0.8, p[0], p[1]); }, { passive: false });
    var drag = null, moved = false, pointers = {};
    svg.addEventListener("pointerdown", function (e) { pointers[e.pointerId] = [e.clientX, e.clientY]; drag = [e.clientX, e.clientY]; moved = false; });
    svg.addEventListener("pointermove", function (e) {
      if (!drag) return;
      var ids = Object.keys(pointers);
      if (ids.length === 2 && pointers[e.pointerId]) {
        var other = pointers[ids[0] == e.pointerId ? ids[1] : ids[0]], old = pointers[e.pointerId];
        var d0 = Math.hypot(old[0] - other[0], old[1] - other[1]), d1 = Math.hypot(e.clientX - other[0], e.clientY - other[1]);
        if (d0 > 0) { var m = toSvg((e.clientX + other[0]) / 2, (e.clientY + other[1]) / 2); zoom(d1 / d0, m[0], m[1]); }
        pointers[e.pointerId] = [e.clientX, e.clientY]; moved = true; return;
      }
      var r = svg.getBoundingClientRect(), dx = e.clientX - drag[0], dy = e.clientY - drag[1];
      if (Math.abs(dx) + Math.abs(dy) > 3) moved = true;
      vb[0] -= dx / r.width * vb[2]; vb[1] -= dy / r.height * vb[3]; drag = [e.clientX, e.clientY]; apply();
    });
    var end = function (e) { delete pointers[e.pointerId]; if (!Object.keys(pointers).length) drag = null; };
    svg.addEventListener("pointerup", end); svg.addEventListener("pointercancel", end);
    svg.addEventListener("click", function (e) { if (moved) { e.preventDefault(); moved = false; } }, true);
    document.querySelectorAll("[data-zoom]").forEach(function (b) {
      b.addEventListener("click", function () { if (b.dataset.zoom === "reset") { vb = base.slice(); apply(); } else zoom(Number(b.dataset.zoom)); });
    });
  }

  // Cockpit counters refresh every 30 s from the JSON twin.
  var counters = document.querySelectorAll("[data-counter]");
  if (counters.length) {
    setInterval(function () {
      fetch("/api/cockpit", { credentials: "same-origin" }).then(function (r) { return r.ok ? r.json() : null; }).then(function (data) {
        if (!data) return;
        counters.forEach(function (el) {
          var v = el.dataset.counter.split(".").reduce(function (o, k) { return o && o[k]; }, data);
          el.textContent = v === undefined ? 0 : v;
        });
      }).catch(function () {});
    }, 30000);
  }
})();
