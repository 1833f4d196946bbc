/* graphmask mask-flow explorer. The layout comes from Python (graphmask/viz/html.py);
   this script only shows, hides, folds and re-routes what is already placed. */
(function () {
  "use strict";
  var t0 = performance.now();
  var D = JSON.parse(document.getElementById("gm-data").textContent);
  var root = document.getElementById("gm-root");
  var svg = document.getElementById("gm-svg");
  var canvas = document.getElementById("gm-canvas");
  var details = document.getElementById("gm-details");
  var batchBox = document.getElementById("gm-batch");
  var search = document.getElementById("gm-search");
  var found = document.getElementById("gm-found");
  var backBox = document.getElementById("gm-backward");
  var weightSel = document.getElementById("gm-weight");
  var layoutEls = {};
  Array.prototype.forEach.call(document.querySelectorAll(".gm-layout"), function (el) {
    layoutEls[el.getAttribute("data-layout")] = el;
  });
  var clusterIds = D.layouts.expanded ? Object.keys(D.layouts.expanded.clusters) : [];
  var state = { layout: "compact", folded: new Set(clusterIds), sel: null, sample: 0,
                matches: [], matchAt: -1 };
  var view = { x: 0, y: 0, w: 100, h: 100 };

  function el(tag, attrs, text) {
    var e = document.createElement(tag);
    if (attrs) Object.keys(attrs).forEach(function (k) { e.setAttribute(k, attrs[k]); });
    if (text !== undefined && text !== null) e.textContent = text;
    return e;
  }
  function layoutEl() { return layoutEls[state.layout]; }
  function q(sel) { return layoutEl().querySelectorAll(sel); }
  function esc(s) { return window.CSS && CSS.escape ? CSS.escape(s) : s; }

  /* ---- paths ------------------------------------------------------------------------ */
  function curveD(pts) {
    var d = "M" + pts[0][0].toFixed(1) + " " + pts[0][1].toFixed(1);
    for (var i = 1; i < pts.length; i++) {
      var x1 = pts[i - 1][0], y1 = pts[i - 1][1], x2 = pts[i][0], y2 = pts[i][1], c;
      if (x1 === x2) c = [x1, y1 + (y2 - y1) / 3, x2, y1 + 2 * (y2 - y1) / 3];
      else { var ym = (y1 + y2) / 2; c = [x1, ym, x2, ym]; }
      d += " C" + c.map(function (v) { return v.toFixed(1); }).join(" ") + " " +
        x2.toFixed(1) + " " + y2.toFixed(1);
    }
    return d;
  }
  function clustersOf(nodeEl) {
    var c = nodeEl ? nodeEl.getAttribute("data-clusters") : "";
    return c ? c.split(" ") : [];
  }
  function outerFolded(chain) {
    for (var i = 0; i < chain.length; i++) if (state.folded.has(chain[i])) return chain[i];
    return null;
  }

  /* ---- what is visible ----------------------------------------------------------- */
  function gradPath() {
    var w = weightSel.value;
    var recs = D.layouts.backward.edges, up = {};
    recs.forEach(function (r) { (up[r.dst] = up[r.dst] || []).push(r.src); });
    var keep = new Set(), stack = [];
    D.weights.forEach(function (x) { if (w === "*" || x.name === w) stack.push(x.node); });
    while (stack.length) {
      var n = stack.pop();
      if (keep.has(n)) continue;
      keep.add(n);
      (up[n] || []).forEach(function (s) {
        if (D.nodes[s] && D.nodes[s].phase === "backward") stack.push(s);
      });
    }
    return keep;
  }
  function applyLayout() {
    Object.keys(layoutEls).forEach(function (k) {
      layoutEls[k].classList.toggle("gm-hidden", k !== state.layout);
    });
    var L = D.layouts[state.layout], lay = layoutEl(), hidden = new Set();
    if (state.layout === "expanded") {
      Array.prototype.forEach.call(lay.querySelectorAll(".gm-cluster"), function (c) {
        var id = c.getAttribute("data-id"), p = c.getAttribute("data-parent"), off = false;
        while (p) { if (state.folded.has(p)) off = true; p = L.clusters[p].parent; }
        c.classList.toggle("gm-hidden", off);
        var f = state.folded.has(id);
        c.querySelector(".gm-open").classList.toggle("gm-hidden", f);
        c.querySelector(".gm-fold").classList.toggle("gm-hidden", !f);
      });
    }
    var back = state.layout === "backward" ? gradPath() : null;
    var nodeEls = {};
    Array.prototype.forEach.call(lay.querySelectorAll(":scope > .gm-node"), function (n) {
      var id = n.getAttribute("data-id"), off = false;
      nodeEls[id] = n;
      if (state.layout === "expanded" && outerFolded(clustersOf(n))) off = true;
      if (back && n.getAttribute("data-phase") === "backward" && !back.has(id)) off = true;
      n.classList.toggle("gm-hidden", off);
      if (off) hidden.add(id);
    });
    Array.prototype.forEach.call(lay.querySelectorAll(".gm-edge"), function (e) {
      var i = +e.getAttribute("data-id").split(":")[1], r = L.edges[i], off = false;
      if (state.layout === "expanded") {
        var a = outerFolded(clustersOf(nodeEls[r.src])), b = outerFolded(clustersOf(nodeEls[r.dst]));
        if (a && a === b) off = true;
        else {
          var s = a ? r.starts[a] : 0, t = b ? r.ends[b] : r.pts.length - 1;
          var d = curveD(r.pts.slice(s, t + 1));
          Array.prototype.forEach.call(e.querySelectorAll("path"), function (p) {
            p.setAttribute("d", d);
          });
        }
      } else if (hidden.has(r.src) || hidden.has(r.dst)) off = true;
      e.classList.toggle("gm-hidden", off);
    });
    root.setAttribute("data-layout", state.layout);
    highlight();
  }
  function setLayout(name) {
    if (!D.layouts[name]) return;
    var changed = state.layout !== name;
    state.layout = name;
    backBox.checked = name === "backward";
    applyLayout();
    if (changed) fit(1);
    if (changed && name === "backward") showBackward();
  }
  function showBackward() {
    var box = null;
    Array.prototype.forEach.call(q('.gm-node[data-phase="backward"]:not(.gm-hidden)'), function (n) {
      var b = n.getBBox();
      if (!box) box = { x0: b.x, y0: b.y, x1: b.x + b.width, y1: b.y + b.height };
      else {
        box.x0 = Math.min(box.x0, b.x); box.y0 = Math.min(box.y0, b.y);
        box.x1 = Math.max(box.x1, b.x + b.width); box.y1 = Math.max(box.y1, b.y + b.height);
      }
    });
    if (!box) return;
    var c = canvasSize(), w = box.x1 - box.x0 + 40, h = box.y1 - box.y0 + 40;
    var s = Math.max(0.6, Math.min(c[0] / w, c[1] / h, 1.5));
    view.w = c[0] / s; view.h = c[1] / s;
    view.x = (box.x0 + box.x1) / 2 - view.w / 2;
    view.y = h * s <= c[1] ? (box.y0 + box.y1) / 2 - view.h / 2 : box.y0 - 20;
    setView();
  }
  function expand(gid) {
    var L = D.layouts.expanded;
    if (!L) return;
    for (var c = gid; c; c = L.clusters[c].parent) state.folded.delete(c);
    if (state.layout !== "expanded") setLayout("expanded"); else applyLayout();
    var b = L.clusters[gid].box, v = view;
    if (b[0] < v.x || b[1] < v.y || b[2] > v.x + v.w || b[3] > v.y + v.h) {
      centerOn({ x: b[0], y: b[1], width: b[2] - b[0], height: Math.min(b[3] - b[1], v.h * 0.9) });
    }
  }
  function collapse(gid) {
    state.folded.add(gid);
    var L = D.layouts.expanded;
    var shut = function (c) { return !c ? false : state.folded.has(c) || shut(L.clusters[c].parent); };
    if (clusterIds.every(shut)) setLayout("compact");  /* nothing open: the picture */
    else applyLayout();
  }

  /* ---- zoom and pan ---------------------------------------------------------------- */
  function setView() {
    svg.setAttribute("viewBox", [view.x, view.y, view.w, view.h].map(function (v) {
      return v.toFixed(2);
    }).join(" "));
  }
  function bounds() {
    var L = D.layouts[state.layout];
    try {
      var b = layoutEl().getBBox();
      if (b.width > 0) return { x: b.x - 10, y: b.y - 10, w: b.width + 20, h: b.height + 20 };
    } catch (err) { /* not rendered */ }
    return { x: 0, y: 0, w: L.width, h: L.height };
  }
  function canvasSize() {
    var r = canvas.getBoundingClientRect();
    return [r.width || 800, r.height || 600];
  }
  function fit(minScale) {
    var c = canvasSize(), bb = bounds();
    var s = Math.min(c[0] / bb.w, c[1] / bb.h, 1.5);
    if (typeof minScale === "number" && s < minScale) {  /* a tall graph: its top, readable */
      s = Math.max(Math.min(c[0] / bb.w, minScale), 0.5);
    }
    view.w = c[0] / s; view.h = c[1] / s;
    view.x = bb.x + bb.w / 2 - view.w / 2;
    view.y = bb.h * s <= c[1] ? bb.y + bb.h / 2 - view.h / 2 : bb.y;
    setView();
  }
  function zoom(f, cx, cy) {
    if (cx === undefined) { cx = view.x + view.w / 2; cy = view.y + view.h / 2; }
    view.x = cx - (cx - view.x) * f; view.y = cy - (cy - view.y) * f;
    view.w *= f; view.h *= f;
    setView();
  }
  function toSvg(ev) {
    var r = svg.getBoundingClientRect();
    return [view.x + (ev.clientX - r.left) / r.width * view.w,
            view.y + (ev.clientY - r.top) / r.height * view.h];
  }
  svg.addEventListener("wheel", function (ev) {
    ev.preventDefault();
    var p = toSvg(ev);
    zoom(ev.deltaY > 0 ? 1.15 : 1 / 1.15, p[0], p[1]);
  }, { passive: false });
  var drag = null;
  svg.addEventListener("pointerdown", function (ev) {
    drag = { x: ev.clientX, y: ev.clientY, vx: view.x, vy: view.y, moved: false };
  });
  window.addEventListener("pointermove", function (ev) {
    if (!drag) return;
    var r = svg.getBoundingClientRect(), dx = ev.clientX - drag.x, dy = ev.clientY - drag.y;
    if (Math.abs(dx) + Math.abs(dy) > 3) { drag.moved = true; canvas.classList.add("gm-dragging"); }
    view.x = drag.vx - dx / r.width * view.w; view.y = drag.vy - dy / r.height * view.h;
    setView();
  });
  window.addEventListener("pointerup", function () {
    setTimeout(function () { drag = null; }, 0);
    canvas.classList.remove("gm-dragging");
  });
  function centerOn(box) {
    var c = canvasSize(), s = c[0] / view.w;
    if (s < 0.6) s = 1;
    view.w = c[0] / s; view.h = c[1] / s;
    view.x = box.x + box.width / 2 - view.w / 2; view.y = box.y + box.height / 2 - view.h / 2;
    setView();
  }

  /* ---- selection and details ------------------------------------------------------- */
  function highlight() {
    Array.prototype.forEach.call(document.querySelectorAll(".gm-selected"), function (e) {
      e.classList.remove("gm-selected");
    });
    Array.prototype.forEach.call(document.querySelectorAll(".gm-match"), function (e) {
      e.classList.remove("gm-match");
    });
    state.matches.forEach(function (id) {
      Array.prototype.forEach.call(q('.gm-node[data-id="' + esc(id) + '"]'), function (e) {
        e.classList.add("gm-match");
      });
    });
    if (!state.sel) return;
    var s = state.sel.kind === "edge" ? '.gm-edge[data-id="' + esc(state.sel.id) + '"]'
      : '.gm-node[data-id="' + esc(state.sel.id) + '"]';
    Array.prototype.forEach.call(q(s), function (e) { e.classList.add("gm-selected"); });
  }
  function kv(table, k, v) {
    if (v === undefined || v === null || v === "") return;
    var tr = el("tr"); tr.appendChild(el("td", null, k));
    var td = el("td"); if (v instanceof Node) td.appendChild(v); else td.textContent = v;
    tr.appendChild(td); table.appendChild(tr);
  }
  function link(text, fn) {
    var a = el("a", { "class": "gm-link" }, text);
    a.addEventListener("click", fn);
    return a;
  }
  function weightsTable(ws) {
    var t = el("table", { "class": "gm-weights" });
    var cols = ["weight", "shape", "dtype", "params"], grads = !!D.layouts.backward;
    if (grads) cols.push("");
    var h = el("tr"); cols.forEach(function (c) {
      h.appendChild(el("th", null, c)); }); t.appendChild(h);
    ws.forEach(function (w) {
      var tr = el("tr");
      [w.name, w.shape, w.dtype, String(w.count)].forEach(function (c) { tr.appendChild(el("td", null, c)); });
      if (!grads) { t.appendChild(tr); return; }
      var td = el("td");
      if (w.trainable) td.appendChild(link("gradient path", function () {
        weightSel.value = w.name;
        if (state.layout === "backward") { applyLayout(); showBackward(); } else setLayout("backward");
      }));
      tr.appendChild(td); t.appendChild(tr);
    });
    return t;
  }
  function chainEl(text) {
    /* a long run of "passed by" steps is shortened; a click shows the whole chain */
    var steps = text.split(" -> "), out = [], i = 0;
    while (i < steps.length) {
      var j = i;
      while (j < steps.length && steps[j].indexOf("passed by '") === 0) j++;
      if (j - i > 4) {
        out.push(steps[i], steps[i + 1], "\u2026 " + (j - i - 3) + " more layers pass it on \u2026",
                 steps[j - 1]);
        i = j;
      } else { out.push(steps[i]); i++; }
    }
    var div = el("div", { "class": "gm-chain" }, out.join(" -> "));
    if (out.length < steps.length) {
      div.title = "click to show the whole chain";
      div.style.cursor = "pointer";
      div.addEventListener("click", function () { div.textContent = text; });
    }
    return div;
  }
  function chainsBlock(ids, box) {
    box.appendChild(el("h3", null, "Mask provenance"));
    if (!ids || !ids.length) { box.appendChild(el("p", { "class": "gm-hint" }, "no mask reaches it and it creates none")); return; }
    ids.forEach(function (i) { box.appendChild(chainEl(D.chains[i])); });
  }
  function showNode(id) {
    var n = D.nodes[id];
    details.innerHTML = "";
    details.setAttribute("data-selected", id);
    details.appendChild(el("h2", null, n.title));
    var t = el("table", { "class": "gm-kv" });
    kv(t, "class", n["class"]); kv(t, "op", n.op);
    kv(t, "output", (n.shapes || []).join(", "));
    kv(t, "phase", n.phase === "backward" ? "backward" : "");
    kv(t, "mask rule", n.rule);
    kv(t, "mask status", n.status);
    if (n.mask && D.nodes[n.mask]) {
      kv(t, "mask", link(n.mask_text || n.mask, function () { select("node", n.mask); }));
    } else if (n.phase === "forward" && n.status) kv(t, "mask", "none (its output carries no mask)");
    if (n.group) kv(t, "primitive nodes", String(n.nodes));
    if (n.in_call) kv(t, "inside call", n.in_call_titles.join(" > "));
    if (n.grad_of) kv(t, "gradient of", n.grad_of.join(", "));
    details.appendChild(t);
    if (n.group && D.layouts.expanded) {
      var open = state.layout === "expanded" && !state.folded.has(id);
      details.appendChild(link(open ? "collapse this call" : "expand this call", function () {
        if (open) collapse(id); else expand(id);
        select("node", id);
      }));
    }
    if (n.phase !== "backward") chainsBlock(n.chains, details);
    details.appendChild(el("h3", null, "Parameters"));
    if (n.weights && n.weights.length) details.appendChild(weightsTable(n.weights));
    else details.appendChild(el("p", { "class": "gm-hint" }, "no weights"));
    if (n.config && Object.keys(n.config).length) {
      details.appendChild(el("h3", null, "Config"));
      var c = el("table", { "class": "gm-kv gm-config" });
      Object.keys(n.config).forEach(function (k) {
        var v = n.config[k]; kv(c, k, typeof v === "string" ? v : JSON.stringify(v));
      });
      details.appendChild(c);
    }
    if (n.inputs) {
      details.appendChild(el("h3", null, "Reads"));
      n.inputs.forEach(function (s) { details.appendChild(el("div", { "class": "gm-chain" }, s)); });
    }
    showBatch(n.mask, n.value);
  }
  function showEdge(id) {
    var e = D.edges[id];
    details.innerHTML = "";
    details.setAttribute("data-selected", id);
    function name(k) {
      var n = D.nodes[k];
      if (!n) return k;
      return n.group || !n.in_call ? n.title : n.title + " (" + n.op + ")";
    }
    var title = name(e.src) + " \u2192 " + name(e.dst);
    details.appendChild(el("h2", null, title));
    var t = el("table", { "class": "gm-kv" });
    kv(t, "edge", D.legend.edges[e.kind]); kv(t, "port", e.port);
    kv(t, "shape", e.shape); kv(t, "dtype", e.dtype);
    kv(t, "mask", e.mask_text || "none");
    if (e.mask && D.nodes[e.mask]) {
      kv(t, "mask node", link(D.nodes[e.mask].title + " [" + e.mask + "]", function () { select("node", e.mask); }));
    }
    details.appendChild(t);
    chainsBlock(e.chains, details);
    showBatch(e.mask, e.value);
  }
  function select(kind, id, center) {
    state.sel = { kind: kind, id: id };
    if (kind === "edge") showEdge(id); else showNode(id);
    highlight();
    if (center) {
      var n = q('.gm-node[data-id="' + esc(id) + '"]:not(.gm-hidden)');
      if (n.length) centerOn(n[0].getBBox());
    }
    root.setAttribute("data-selected", id);
  }

  /* ---- the batch: mask grid and values --------------------------------------------- */
  function decode(b64) {
    var s = atob(b64), buf = new ArrayBuffer(s.length), u = new Uint8Array(buf);
    for (var i = 0; i < s.length; i++) u[i] = s.charCodeAt(i);
    return new Float32Array(buf);
  }
  function showBatch(maskKey, valueKey) {
    batchBox.innerHTML = "";
    var B = D.batch;
    if (!B) return;
    var mask = maskKey ? B.masks[maskKey] : null, ids = maskKey ? B.ids[maskKey] : null;
    var val = valueKey ? B.values[valueKey] : null;
    if (!mask && !val) {
      batchBox.appendChild(el("p", { "class": "gm-hint" }, "no mask and no sequence value here for the batch"));
      return;
    }
    var samples = mask ? mask.length : val.shape[0];
    var steps = mask ? mask[0].length : val.shape[1];
    if (val) steps = Math.min(steps, val.shape[1]);
    batchBox.appendChild(el("h3", null, "Batch: " + (mask ? "mask" : "value") + " (" + samples +
      " of " + B.total + " samples \u00d7 " + steps + " steps)"));
    var grid = el("table", { "class": "gm-grid", id: "gm-grid" });
    var head = el("tr"); head.appendChild(el("th"));
    for (var t = 0; t < steps; t++) head.appendChild(el("th", null, String(t)));
    grid.appendChild(head);
    var kept = 0, total = 0;
    for (var b = 0; b < samples; b++) {
      var tr = el("tr", { "data-sample": String(b) });
      if (b === state.sample) tr.classList.add("gm-sample");
      var th = el("th", { "class": "gm-row", title: "show this sample's values" }, String(b));
      th.addEventListener("click", (function (bb) { return function () {
        state.sample = bb; showBatch(maskKey, valueKey); }; })(b));
      tr.appendChild(th);
      for (var s = 0; s < steps; s++) {
        var on = mask ? mask[b][s] === "1" : null, txt = "";
        var mark = val ? val.marks[b][s] : ".";
        if (ids) txt = String(ids[b][s]);
        if (mark !== ".") txt = (ids ? txt + " " : "") + mark;
        var td = el("td", { "class": on === null ? "nomask" : on ? "kept" : "masked",
                            "data-mark": mark }, txt);
        td.title = "sample " + b + ", step " + s + (on === null ? "" : on ? ": kept" : ": masked") +
          (mark === "0" ? ", value all zeros" : mark === "=" ? ", value repeats step " + (s - 1) : "");
        if (on) kept++;
        total++;
        tr.appendChild(td);
      }
      grid.appendChild(tr);
    }
    batchBox.appendChild(grid);
    batchBox.appendChild(el("p", { "class": "gm-hint", id: "gm-grid-note" }, (mask ? "kept " + kept + " of " + total +
      " positions. " : "") + (val ? "In a cell: 0 = the value there is all zeros, = = it repeats the step before." : "") +
      (ids ? " Numbers are the ids." : "")));
    if (!val) return;
    var data = decode(val.data), F = val.shape[2], T = val.shape[1], b0 = Math.min(state.sample, val.shape[0] - 1);
    batchBox.appendChild(el("h3", null, "Values of sample " + b0 + " (shape " + JSON.stringify(val.full) +
      (F < (val.full[2] || 1) || T < val.full[1] ? ", first " + T + " steps \u00d7 " + F + " features" : "") + ")"));
    var vt = el("table", { "class": "gm-values", id: "gm-values" });
    var vh = el("tr"); vh.appendChild(el("th", null, "t"));
    for (var f = 0; f < F; f++) vh.appendChild(el("th", null, String(f)));
    vt.appendChild(vh);
    for (var tt = 0; tt < T; tt++) {
      var row = el("tr"); if (mask && mask[b0][tt] === "0") row.classList.add("masked");
      row.appendChild(el("th", null, String(tt)));
      for (var ff = 0; ff < F; ff++) {
        var v = data[(b0 * T + tt) * F + ff];
        row.appendChild(el("td", null, Math.abs(v) >= 1000 || (v !== 0 && Math.abs(v) < 0.001) ? v.toExponential(1) : v.toFixed(3)));
      }
      vt.appendChild(row);
    }
    batchBox.appendChild(vt);
  }

  /* ---- search ---------------------------------------------------------------------- */
  function runSearch(step) {
    var s = search.value.trim().toLowerCase();
    state.matches = [];
    if (s) {
      Object.keys(D.nodes).forEach(function (id) {
        var n = D.nodes[id];
        var hay = [n.title, n.layer, n.op, n["class"]].join(" ").toLowerCase();
        if (hay.indexOf(s) >= 0 && n.phase !== "backward") state.matches.push(id);
      });
    }
    var inLayout = state.matches.filter(function (id) {
      return q('.gm-node[data-id="' + esc(id) + '"]').length > 0;
    });
    found.textContent = s ? state.matches.length + " found" : "";
    highlight();
    if (!step || !state.matches.length) return;
    state.matchAt = (state.matchAt + 1) % state.matches.length;
    var id = state.matches[state.matchAt];
    if (inLayout.indexOf(id) < 0 || (state.layout === "expanded" &&
        outerFolded(clustersOf(layoutEl().querySelector('.gm-node[data-id="' + esc(id) + '"]'))))) {
      var nodeEl = layoutEls.expanded && layoutEls.expanded.querySelector(':scope > .gm-node[data-id="' + esc(id) + '"]');
      if (nodeEl) { var ch = clustersOf(nodeEl); if (ch.length) expand(ch[ch.length - 1]); }
    }
    select("node", id, true);
  }
  search.addEventListener("input", function () { state.matchAt = -1; runSearch(false); });
  search.addEventListener("keydown", function (ev) { if (ev.key === "Enter") runSearch(true); });

  /* ---- wiring ---------------------------------------------------------------------- */
  svg.addEventListener("click", function (ev) {
    if (drag && drag.moved) return;
    var tg = ev.target.closest(".gm-toggle");
    if (tg) {
      var gid = tg.getAttribute("data-group");
      if (state.layout === "expanded" && !state.folded.has(gid)) collapse(gid); else expand(gid);
      select("node", gid);
      return;
    }
    var n = ev.target.closest(".gm-node, .gm-head");
    if (n) { select("node", n.getAttribute("data-id")); return; }
    var e = ev.target.closest(".gm-edge");
    if (e) select("edge", e.getAttribute("data-id"));
  });
  document.getElementById("gm-fit").addEventListener("click", function () { fit(); });
  document.getElementById("gm-zoom-in").addEventListener("click", function () { zoom(1 / 1.25); });
  document.getElementById("gm-zoom-out").addEventListener("click", function () { zoom(1.25); });
  var expAll = document.getElementById("gm-expand-all"), colAll = document.getElementById("gm-collapse-all");
  if (!D.layouts.expanded) { expAll.disabled = true; colAll.disabled = true; }
  expAll.addEventListener("click", function () { state.folded.clear(); setLayout("expanded"); });
  colAll.addEventListener("click", function () { clusterIds.forEach(function (c) { state.folded.add(c); }); setLayout("compact"); });
  if (D.layouts.backward) {
    var all = el("option", { value: "*" }, "all weights"); weightSel.appendChild(all);
    D.weights.forEach(function (w) { weightSel.appendChild(el("option", { value: w.name }, w.name)); });
    weightSel.value = D.weights.length ? D.weights[0].name : "*";
    backBox.addEventListener("change", function () { setLayout(backBox.checked ? "backward" : "compact"); });
    weightSel.addEventListener("change", function () {
      if (state.layout === "backward") { applyLayout(); showBackward(); }
    });
  } else {
    backBox.disabled = true; weightSel.disabled = true;
    document.getElementById("gm-backward-label").title = "compile the model to see its backward graph";
  }
  var leg = document.getElementById("gm-legend");
  leg.appendChild(el("h3", null, "Legend"));
  Object.keys(D.legend.edges).forEach(function (k) {
    var r = el("div", { "class": "gm-legend-row" }), sw = el("span", { "class": "gm-swatch" });
    sw.style.background = D.styles.edges[k]; r.appendChild(sw); r.appendChild(el("span", null, D.legend.edges[k]));
    leg.appendChild(r);
  });
  Object.keys(D.styles.nodes).forEach(function (k) {
    var r = el("div", { "class": "gm-legend-row" }), sw = el("span", { "class": "gm-swatch" });
    sw.style.background = D.styles.nodes[k][0]; sw.style.border = "1px solid " + D.styles.nodes[k][1];
    r.appendChild(sw); r.appendChild(el("span", null, D.legend.nodes[k])); leg.appendChild(r);
  });
  if (D.start === "expanded") { state.folded.clear(); state.layout = "expanded"; }
  if (D.start === "backward") { state.layout = "backward"; backBox.checked = true; }
  applyLayout();
  fit(1);
  if (state.layout === "backward") showBackward();
  window.addEventListener("resize", function () { fit(1); });
  window.gmExplorer = { state: state, data: D, select: select, expand: expand, collapse: collapse,
                        setLayout: setLayout, ready: performance.now() - t0 };
  root.setAttribute("data-ready", "1");
})();
