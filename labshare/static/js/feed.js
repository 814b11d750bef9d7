// "Copy" beside the personal calendar feed's address (My bookings).
(function () {
  const button = document.getElementById("copy-feed");
  if (!button) return;
  button.addEventListener("click", async () => {
    const input = document.getElementById("feed-url");
    input.select();
    try { await navigator.clipboard.writeText(input.value); } catch (e) { document.execCommand("copy"); }
    button.textContent = button.dataset.done;
  });
})();
