// adamml report: draws the video rows from the embedded data, a page at a time, sorted and filtered as the
// controls (and the URL fragment: #filter=wrong&sort=gflops-desc&class=c3&modality=flow&q=abc) say; shows the
// plots' tooltips. No library; the page works from disk.
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("report-data").textContent);
  var PAGE = 200;
  var KEYS = ["filter", "sort", "class", "modality", "q"];
  var shown = PAGE;
  var form = document.getElementById("controls");
  var tbody = document.getElementById("rows");

  function el(tag, cls, text) {
    var node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function readHash() {
    var state = {filter: "all", sort: "order", "class": "", modality: "", q: ""};
    location.hash.replace(/^#/, "").split("&").forEach(function (part) {
      var kv = part.split("=");
      if (KEYS.indexOf(kv[0]) >= 0 && kv.length === 2) state[kv[0]] = decodeURIComponent(kv[1]);
    });
    return state;
  }

  function writeHash(state) {
    var parts = KEYS.filter(function (k) { return state[k] && !(k === "filter" && state[k] === "all") &&
      !(k === "sort" && state[k] === "order"); }).map(function (k) { return k + "=" + encodeURIComponent(state[k]); });
    history.replaceState(null, "", parts.length ? "#" + parts.join("&") : location.pathname + location.search);
  }

  function formState() {
    var state = {};
    KEYS.forEach(function (k) { state[k] = form.elements[k].value; });
    return state;
  }

  function uses(video, m, every) {  // computed in some segment (every=false) or in none (every=true)
    var bit = 1 << m, any = video.d.some(function (d) { return d & bit; });
    return every ? !any : any;
  }

  function selected(state) {
    var cls = data.classes.indexOf(state["class"]);
    var neg = state.modality.charAt(0) === "-";
    var mod = data.modalities.indexOf(neg ? state.modality.slice(1) : state.modality);
    var q = state.q.toLowerCase();
    var list = data.videos.filter(function (v) {
      if (state.filter === "wrong" && v.ok) return false;
      if (state.filter === "right" && !v.ok) return false;
      if (state["class"] && v.y.indexOf(cls) < 0) return false;
      if (state.modality && mod >= 0 && !uses(v, mod, neg)) return false;
      return !q || v.id.toLowerCase().indexOf(q) >= 0;
    });
    var conf = function (v) { return v.p.length ? v.p[0][1] : 0; };
    var by = {
      "gflops-desc": function (a, b) { return b.g - a.g; }, "gflops-asc": function (a, b) { return a.g - b.g; },
      "confidence-asc": function (a, b) { return conf(a) - conf(b); },
      "confidence-desc": function (a, b) { return conf(b) - conf(a); },
      "id": function (a, b) { return a.id < b.id ? -1 : a.id > b.id ? 1 : 0; }
    }[state.sort];
    return by ? list.slice().sort(by) : list;
  }

  function thumb(video, s) {
    var node = el("div", "th");
    if (video.t < 0) { node.className += " none"; return node; }
    var i = video.t + s, sp = data.sprite;
    node.style.backgroundPosition = (-(i % sp.columns) * sp.width) + "px " + (-Math.floor(i / sp.columns) * sp.height) + "px";
    return node;
  }

  function segment(video, s) {
    var seg = el("div", "seg"), cells = el("div", "cells");
    seg.appendChild(thumb(video, s));
    data.modalities.forEach(function (m, j) {
      var on = (video.d[s] >> j) & 1, p = video.u[s] ? video.u[s][j] : null;
      var informative = video.i && (video.i[s] >> j) & 1;
      var chip = el("span", "chip m-" + m + (on ? " on" : " off") + (informative ? " inf" : ""));
      chip.appendChild(el("b", "", data.letters[j]));
      chip.appendChild(document.createTextNode(p === null ? "" : p));
      chip.title = m + ": " + (on ? "computed" : "skipped") + (p === null ? "" : ", P(use) " + p + " %") +
        (video.i ? (informative ? "; informative" : "; not informative") : "");
      cells.appendChild(chip);
    });
    seg.appendChild(cells);
    return seg;
  }

  function row(video) {
    var tr = el("tr", video.ok ? "right" : "wrong");
    tr.dataset.id = video.id;
    var first = el("td");
    first.appendChild(el("div", "vid", video.id));
    var lab = el("div", "lab");
    lab.appendChild(el("span", "verdict " + (video.ok ? "ok" : "bad"), video.ok ? "right" : "wrong"));
    lab.appendChild(document.createTextNode(" label " + video.y.map(function (c) { return data.classes[c]; }).join(", ") +
      (video.ok || !video.p.length ? "" : ", predicted " + data.classes[video.p[0][0]])));
    first.appendChild(lab);
    var strip = el("td"), box = el("div", "strip");
    video.d.forEach(function (_d, s) { box.appendChild(segment(video, s)); });
    strip.appendChild(box);
    var top = el("td", "top5");
    video.p.forEach(function (pair) {
      var line = el("div"), bar = el("span", "bar"), fill = el("span", "fill");
      line.appendChild(el("span", "name" + (video.y.indexOf(pair[0]) >= 0 ? " true" : ""), data.classes[pair[0]]));
      fill.style.width = (100 * pair[1]).toFixed(1) + "%";
      bar.appendChild(fill);
      line.appendChild(bar);
      line.appendChild(el("span", "", (100 * pair[1]).toFixed(1) + " %"));
      top.appendChild(line);
    });
    var cost = el("td", "r gcell"), gbar = el("span", "bar"), gfill = el("span", "fill gfl");
    gfill.style.width = data.always_on ? Math.min(100, 100 * video.g / data.always_on).toFixed(1) + "%" : "0";
    gbar.appendChild(gfill);
    cost.appendChild(el("div", "", video.g.toPrecision(4)));
    cost.appendChild(gbar);
    [first, strip, top, cost].forEach(function (td) { tr.appendChild(td); });
    return tr;
  }

  function render() {
    var state = formState(), list = selected(state), frag = document.createDocumentFragment();
    list.slice(0, shown).forEach(function (v) { frag.appendChild(row(v)); });
    tbody.replaceChildren(frag);
    document.getElementById("count").textContent = list.length + " of " + data.videos.length + " videos" +
      (list.length > shown ? " (first " + shown + " shown)" : "");
    document.getElementById("more").hidden = list.length <= shown;
    document.body.dataset.shown = Math.min(shown, list.length);
    document.body.dataset.matching = list.length;
    writeHash(state);
  }

  function apply(state) {
    KEYS.forEach(function (k) {
      var field = form.elements[k];
      field.value = state[k];
      if (field.value !== state[k]) field.value = k === "filter" ? "all" : k === "sort" ? "order" : "";
    });
    shown = PAGE;
    render();
  }

  function tooltips() {
    var tip = document.getElementById("tip");
    document.querySelectorAll("[data-tip]").forEach(function (node) {
      node.addEventListener("mouseenter", function (event) {
        tip.textContent = node.getAttribute("data-tip");
        tip.hidden = false;
        tip.style.left = (event.clientX + 12) + "px";
        tip.style.top = (event.clientY + 12) + "px";
        node.classList.add("hot");
      });
      node.addEventListener("mouseleave", function () { tip.hidden = true; node.classList.remove("hot"); });
    });
  }

  tooltips();
  if (form) {
    form.addEventListener("input", function () { shown = PAGE; render(); });
    document.getElementById("more").addEventListener("click", function () { shown += PAGE; render(); });
    document.querySelectorAll(".sorter").forEach(function (button) {
      button.addEventListener("click", function () { form.elements.sort.value = button.dataset.sort; render(); });
    });
    window.addEventListener("hashchange", function () {
      apply(readHash());
      document.getElementById("videos").scrollIntoView();
    });
    apply(readHash());
  }
  document.body.dataset.readyMs = Math.round(performance.now());  // for the tests and the benchmark
  document.body.dataset.ready = "1";
})();
