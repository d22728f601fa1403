// A "Copy" button next to a value shown once (the account page's new API token), shown by this
// script (without it, the value is still there to select). Where the browser refuses the clipboard
// (a page not served over HTTPS, say), the value is selected instead, for Ctrl-C; a note beside the
// button says which happened.
document.querySelectorAll("button[data-copy]").forEach((button) => {
  const value = document.getElementById(button.dataset.copy);
  const said = button.nextElementSibling; // a live region that says what the click did
  button.hidden = false;
  button.addEventListener("click", async () => {
    try {
      await navigator.clipboard.writeText(value.textContent);
      said.textContent = gettext("Copied.");
    } catch (err) {
      getSelection().selectAllChildren(value);
      said.textContent = gettext("Selected: press Ctrl-C (⌘-C on a Mac) to copy it.");
    }
  });
});
