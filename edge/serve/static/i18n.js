// The page's string table: the same JSON the server filled the HTML with, for the strings shown later.
const language = document.documentElement.lang || "en";
let strings = {};

export async function loadStrings() {
  const response = await fetch(`static/i18n/${language}.json`);
  strings = await response.json();
}

export function has(key) {
  return Object.prototype.hasOwnProperty.call(strings, key);
}

// t("confidence", {percent: 87}) -> "87 % sure"; an unknown key shows itself, so a gap is visible.
export function t(key, values = {}) {
  const text = has(key) ? strings[key] : key;
  return text.replace(/\{(\w+)\}/g, (whole, name) => (name in values ? String(values[name]) : whole));
}

const decimal = new Intl.NumberFormat(language, { minimumFractionDigits: 1, maximumFractionDigits: 1 });
const whole = new Intl.NumberFormat(language, { maximumFractionDigits: 0 });

export function seconds(value) {
  return decimal.format(value || 0);
}

export function percent(fraction) {
  return whole.format(100 * fraction);
}
