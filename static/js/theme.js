/* The reading theme: light, or fully dark (the whole page, not only the image viewer), remembered
   in localStorage. Loaded in <head> without defer so the page never flashes light before dark. */
(function () {
  "use strict";

  const KEY = "histosynth.theme";
  const root = document.documentElement;

  function stored() {
    try {
      return window.localStorage.getItem(KEY);
    } catch (err) {
      return null; // storage blocked: the toggle still works for this page
    }
  }

  function apply(theme) {
    const dark = theme === "dark";
    root.classList.toggle("dark", dark);
    root.style.colorScheme = dark ? "dark" : "light";
    for (const b of document.querySelectorAll("[data-theme-toggle]")) b.setAttribute("aria-pressed", String(dark));
  }

  function toggle() {
    const theme = root.classList.contains("dark") ? "light" : "dark";
    try {
      window.localStorage.setItem(KEY, theme);
    } catch (err) {
      /* not remembered, still applied */
    }
    apply(theme);
  }

  apply(stored());
  document.addEventListener("DOMContentLoaded", () => {
    apply(stored() || (root.classList.contains("dark") ? "dark" : "light"));
    for (const b of document.querySelectorAll("[data-theme-toggle]")) b.addEventListener("click", toggle);
  });
  window.HistoTheme = { toggle };
})();
