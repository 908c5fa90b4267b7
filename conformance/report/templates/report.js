// Filter by outcome: unchecking an outcome hides its summary rows and its case sections.
document.querySelectorAll("#filter input").forEach((box) => {
  box.addEventListener("change", () => {
    const shown = new Set([...document.querySelectorAll("#filter input:checked")].map((b) => b.value));
    document.querySelectorAll("[data-outcome]").forEach((node) => {
      node.classList.toggle("hidden", !shown.has(node.dataset.outcome));
    });
  });
});
