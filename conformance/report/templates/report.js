// Filter by outcome: unchecking an outcome hides its summary rows and its case sections.
document.querySelectorAll("#filter input").forEach((box) => {
  box.addEventListener("change", () => {
    const shown = new Set([...document.querySelectorAll("#filter input:checked")].map((b) => b.value));
    document.querySelectorAll("[data-outcome]").forEach((node) => {
      node.classList.toggle("hidden", !shown.has(node.dataset.outcome));
    });
  });
});
// A link to a case (#CASE_ID) opens the case, also a passing one that starts collapsed.
function openLinkedCase() {
  const id = decodeURIComponent(location.hash.slice(1));
  const section = id && document.getElementById(id);
  const details = section && section.querySelector("details.case");
  if (details) details.open = true;
}
window.addEventListener("hashchange", openLinkedCase);
openLinkedCase();
