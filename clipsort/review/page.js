// The review page's behaviour: keyboard and buttons send a card to another decision, and the
// corrected plan (the JSON in <script id="plan">) is saved as a file for `clipsort sort --plan`.
(function () {
  "use strict";
  const body = document.body;
  const planNode = document.getElementById("plan");
  const plan = planNode ? JSON.parse(planNode.textContent) : null;
  const editable = body.dataset.editable === "1" && plan !== null;
  const sections = new Map();
  document.querySelectorAll("section.decision").forEach(function (s) { sections.set(s.dataset.decision, s); });
  const keys = new Map();
  sections.forEach(function (s, decision) { if (s.dataset.key) keys.set(s.dataset.key, decision); });
  let current = null;
  let changes = 0;

  function visibleCards() {
    return Array.prototype.filter.call(document.querySelectorAll(".card"), function (c) {
      return c.offsetParent !== null;
    });
  }
  function focusCard(card) {
    if (!card) return;
    current = card;
    card.focus();
    card.scrollIntoView({ block: "nearest" });
  }
  function columns(card) {
    const grid = card.parentElement;
    const top = grid.firstElementChild ? grid.firstElementChild.offsetTop : 0;
    let n = 0;
    for (const c of grid.children) { if (c.offsetTop === top) n++; else break; }
    return Math.max(1, n);
  }
  function counts() {
    sections.forEach(function (s) {
      const count = s.querySelector(".count");
      if (count) count.textContent = "(" + s.querySelector(".grid").children.length + ")";
    });
    const save = document.getElementById("save");
    if (save) {
      save.disabled = changes === 0;
      save.textContent = changes ? "Save plan (" + changes + " changed)" : "Save plan";
    }
  }
  function send(card, decision) {
    if (!editable || !card) return;
    const target = sections.get(decision);
    if (!target || card.dataset.decision === decision) return;
    const entry = plan.photos[Number(card.dataset.index)];
    if (!entry) return;
    const next = card.nextElementSibling || card.previousElementSibling;
    if (card.dataset.was === undefined) card.dataset.was = card.dataset.decision;
    entry.decision = decision;
    card.dataset.decision = decision;
    const changed = card.dataset.was !== decision;
    card.classList.toggle("changed", changed);
    const moved = card.querySelector(".moved");
    if (moved) moved.textContent = changed ? "sent to " + target.dataset.title : "";
    target.querySelector(".grid").appendChild(card);
    changes = document.querySelectorAll(".card.changed").length;
    counts();
    if (next) focusCard(next);
  }
  function save() {
    const blob = new Blob([JSON.stringify(plan, null, 1)], { type: "application/json" });
    const link = document.createElement("a");
    link.href = URL.createObjectURL(blob);
    link.download = body.dataset.planName || "plan.json";
    document.body.appendChild(link);
    link.click();
    link.remove();
    setTimeout(function () { URL.revokeObjectURL(link.href); }, 1000);
  }
  document.addEventListener("focusin", function (e) {
    if (e.target.classList && e.target.classList.contains("card")) current = e.target;
  });
  document.addEventListener("click", function (e) {
    const card = e.target.closest ? e.target.closest(".card") : null;
    if (card) focusCard(card);
    const button = e.target.closest ? e.target.closest("button[data-send]") : null;
    if (button) send(current, button.dataset.send);
  });
  document.addEventListener("keydown", function (e) {
    if (e.ctrlKey || e.metaKey || e.altKey) return;
    const cards = visibleCards();
    if (!cards.length) return;
    const at = current ? cards.indexOf(current) : -1;
    let to = null;
    if (e.key === "ArrowRight") to = at + 1;
    else if (e.key === "ArrowLeft") to = at - 1;
    else if (e.key === "ArrowDown") to = at < 0 ? 0 : at + columns(current);
    else if (e.key === "ArrowUp") to = at - (at < 0 ? 0 : columns(current));
    if (to !== null) {
      e.preventDefault();
      focusCard(cards[Math.max(0, Math.min(cards.length - 1, to))]);
      return;
    }
    if (keys.has(e.key) && current) {
      e.preventDefault();
      send(current, keys.get(e.key));
    }
  });
  const close = document.getElementById("only-close");
  if (close) close.addEventListener("change", function () { body.classList.toggle("only-close", close.checked); });
  const saveButton = document.getElementById("save");
  if (saveButton) saveButton.addEventListener("click", save);
  counts();
  body.dataset.readyMs = String(Math.round(performance.now()));  // when the page could be used
  body.dataset.ready = "1";
})();
