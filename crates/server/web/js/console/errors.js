// Where the console says what went wrong: the alert above the sections.

/** Shows `text` in the console's alert. */
export function showError(text) {
  const error = document.getElementById('console-error');
  error.textContent = text;
  error.hidden = false;
}

/** Hides the alert. */
export function clearError() {
  document.getElementById('console-error').hidden = true;
}
