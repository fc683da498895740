"""The report's page: its style and the gallery's filters, as plain strings (report.py fills them).

Everything the page needs is inside it (plotly.js inlined, images as data URIs): it opens from a
laptop's disk, a shared drive or an air-gapped cluster alike. The script records what it rendered on
<body> (data-plots, data-cards, data-errors) so a headless browser can check the page from its DOM.
"""

STYLE = """
:root { --ink:#1f2937; --muted:#6b7280; --line:#e5e7eb; --bg:#f9fafb; --warn:#b91c1c; --ok:#15803d; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: var(--ink); margin: 0;
       background: var(--bg); }
header { background: #111827; color: #f9fafb; padding: 14px 24px; }
header h1 { font-size: 18px; margin: 0 0 4px; }
header .meta { color: #d1d5db; font-size: 13px; }
main { padding: 12px 24px 40px; max-width: 1500px; margin: auto; }
h2 { font-size: 16px; margin: 28px 0 8px; border-bottom: 1px solid var(--line); padding-bottom: 4px; }
.plots { display: grid; grid-template-columns: repeat(auto-fill, minmax(460px, 1fr)); gap: 12px; }
.plot { background: white; border: 1px solid var(--line); border-radius: 6px; padding: 4px; }
.empty { color: var(--muted); font-style: italic; }
table.alarms { border-collapse: collapse; background: white; font-size: 13px; }
table.alarms th, table.alarms td { border: 1px solid var(--line); padding: 3px 8px; text-align: right; }
table.alarms th:first-child, table.alarms td:first-child { text-align: left; }
td.crossed { color: var(--warn); font-weight: 600; background: #fef2f2; }
.filters { display: flex; flex-wrap: wrap; gap: 14px; align-items: center; background: white;
           border: 1px solid var(--line); border-radius: 6px; padding: 8px 12px; margin-bottom: 10px; }
.filters label { color: var(--muted); }
.gallery { display: grid; grid-template-columns: repeat(auto-fill, minmax(300px, 1fr)); gap: 10px; }
.card { background: white; border: 1px solid var(--line); border-radius: 6px; padding: 8px; }
.card[hidden] { display: none; }
.card img { width: 100%; max-height: 240px; object-fit: contain; image-rendering: pixelated;
            background: #f3f4f6; border-radius: 4px; }
.card .head { display: flex; justify-content: space-between; font-size: 12px; color: var(--muted); }
.card .reward { font-weight: 600; color: var(--ink); }
.card .scores { font-size: 12px; margin: 4px 0; }
.card .scores span { display: inline-block; background: #eef2ff; border-radius: 3px; padding: 0 5px;
                     margin: 1px 3px 1px 0; }
.card pre { white-space: pre-wrap; word-break: break-word; font-size: 12px; background: #f3f4f6;
            padding: 6px; border-radius: 4px; max-height: 220px; overflow: auto; margin: 4px 0; }
.card details summary { cursor: pointer; color: var(--muted); font-size: 12px; }
.card div.turn { border-left: 3px solid #c7d2fe; padding-left: 6px; margin: 6px 0; font-size: 12px; }
.card img.turn { width: 48%; max-height: 160px; margin-right: 2%; }
.card pre.observation { background: #fef9c3; }
.legend-box { display: inline-block; width: 10px; height: 10px; border: 2px solid; margin: 0 3px 0 8px; }
"""

SCRIPT = """
(function () {
  const errors = [];
  window.addEventListener("error", (e) => { errors.push(String(e.message || e)); report(); });
  function report() {
    const plots = [...document.querySelectorAll(".js-plotly-plot")];
    document.body.dataset.plots = plots.filter((p) => p.querySelector(".main-svg")).length;
    document.body.dataset.cards = document.querySelectorAll(".card:not([hidden])").length;
    document.body.dataset.errors = errors.join(" | ");
  }
  function applyFilters() {
    const task = document.getElementById("f-task").value;
    const step = document.getElementById("f-step").value;
    const min = parseFloat(document.getElementById("f-min").value);
    const max = parseFloat(document.getElementById("f-max").value);
    const boxes = document.getElementById("f-boxes").checked;
    let shown = 0;
    for (const card of document.querySelectorAll(".card")) {
      const r = parseFloat(card.dataset.reward);
      const ok = (!task || card.dataset.task === task) && (!step || card.dataset.step === step) &&
        !(r < min) && !(r > max) && (!boxes || card.dataset.boxes === "1");
      card.hidden = !ok;
      shown += ok ? 1 : 0;
    }
    document.getElementById("f-count").textContent = shown + " shown";
    report();
  }
  function sortCards() {
    const key = document.getElementById("f-sort").value;
    const grid = document.querySelector(".gallery");
    const cards = [...grid.children];
    const val = (c, k) => parseFloat(c.dataset[k]);
    const order = {
      newest: (a, b) => val(b, "step") - val(a, "step") || val(a, "order") - val(b, "order"),
      "reward-desc": (a, b) => val(b, "reward") - val(a, "reward"),
      "reward-asc": (a, b) => val(a, "reward") - val(b, "reward"),
      "advantage-desc": (a, b) => val(b, "advantage") - val(a, "advantage"),
      "advantage-asc": (a, b) => val(a, "advantage") - val(b, "advantage"),
    }[key];
    cards.sort(order).forEach((c) => grid.appendChild(c));
  }
  function fromHash() {
    // report.html#task=detection&min=0.5&sort=reward-desc opens with those filters (a link to share)
    const params = new URLSearchParams(location.hash.slice(1));
    for (const [key, value] of params) {
      const el = document.getElementById("f-" + key);
      if (!el) continue;
      if (el.type === "checkbox") el.checked = value === "1" || value === "true";
      else el.value = value;
    }
  }
  document.addEventListener("DOMContentLoaded", () => {
    if (document.querySelector(".filters")) fromHash();
    const controls = document.querySelectorAll(".filters select, .filters input");
    controls.forEach((el) => el.addEventListener("input", () => { sortCards(); applyFilters(); }));
    if (document.querySelector(".gallery")) { sortCards(); applyFilters(); }
    report();
    // plotly draws synchronously on load; a resize redraws, so measure again when it settles
    window.addEventListener("load", () => setTimeout(report, 0));
  });
})();
"""

PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>{style}</style>
<script>{plotlyjs}</script>
</head>
<body>
<header><h1>{title}</h1><div class="meta">{meta}</div></header>
<main>
{sections}
</main>
<script>{script}</script>
</body></html>
"""
