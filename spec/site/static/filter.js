// Filters the requirements table by its facets and a text search. Without JavaScript the whole
// table shows and the filter form stays hidden.
(() => {
  const form = document.getElementById("filters");
  const table = document.getElementById("catalog");
  if (!form || !table) return;
  const rows = Array.from(table.tBodies[0].rows);
  const controls = Array.from(form.querySelectorAll("[data-filter]"));
  const shown = document.getElementById("shown");
  const apply = () => {
    const wanted = controls.map((c) => [c.dataset.filter, c.value.trim().toLowerCase()]);
    let count = 0;
    for (const row of rows) {
      const match = wanted.every(([key, value]) => {
        if (!value) return true;
        if (key === "text") return row.textContent.toLowerCase().includes(value);
        return (row.dataset[key] || "").toLowerCase() === value;
      });
      row.hidden = !match;
      if (match) count += 1;
    }
    shown.value = `${count} of ${rows.length}`;
  };
  form.addEventListener("input", apply);
  form.addEventListener("submit", (event) => event.preventDefault());
  form.hidden = false;
  apply();
})();
