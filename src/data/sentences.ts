// sentences.ts: a small rule-based English sentence splitter, enough to take the first
// sentence of an ImageInWords description as its short caption. A period ends a sentence
// only when whitespace and an upper-case letter, digit or opening quote follow, and the
// word before it is not a known abbreviation, an initial or part of a dotted acronym.

/** Abbreviations (lower case, without their final period) that do not end a sentence. */
const ABBREVIATIONS = new Set([
  'mr', 'mrs', 'ms', 'dr', 'prof', 'sr', 'jr', 'st', 'mt', 'ft', 'ave', 'blvd', 'rd',
  'vs', 'etc', 'e.g', 'i.e', 'cf', 'approx', 'ca', 'no', 'nos', 'fig', 'figs', 'vol',
  'inc', 'ltd', 'co', 'corp', 'dept', 'est', 'gen', 'gov', 'lt', 'col', 'capt', 'sgt',
  'rev', 'hon', 'jan', 'feb', 'mar', 'apr', 'jun', 'jul', 'aug', 'sep', 'sept', 'oct',
  'nov', 'dec', 'a.m', 'p.m', 'u.s', 'u.k', 'u.s.a', 'd.c', 'in', 'oz', 'lb', 'lbs',
]);
// 'etc' and 'in' are listed although they may end a sentence: "apples, pears, etc. The
// bowl ..." splits late rather than early, and a late split only makes the short caption
// longer, never wrong; 'in.' (inches) is far more common than a sentence ending in "in."

const CLOSERS = new Set(['"', "'", ')', ']', '\u201d', '\u2019', '\u00bb']);
const OPENERS = new Set(['"', "'", '(', '[', '\u201c', '\u2018', '\u00ab']);

function isUpperOrDigit(c: string): boolean {
  return /^[\p{Lu}\p{Lt}\p{N}]$/u.test(c);
}

/** The word (letters, digits and inner periods) that ends just before position `end`. */
function wordBefore(text: string, end: number): string {
  let s = end;
  while (s > 0 && /[\p{L}\p{N}.]/u.test(text[s - 1])) s--;
  return text.slice(s, end);
}

/** Whether the terminator at `i` ('.', '!', '?') ends a sentence; returns the end index or -1. */
function sentenceEnd(text: string, i: number): number {
  let j = i + 1;
  while (j < text.length && (text[j] === '.' || text[j] === '!' || text[j] === '?')) j++; // "..." or "?!"
  while (j < text.length && CLOSERS.has(text[j])) j++;
  if (j >= text.length) return j;
  if (!/\s/.test(text[j])) return -1; // "3.5", "e.g.,", "example.com"
  let k = j;
  while (k < text.length && /\s/.test(text[k])) k++;
  if (k >= text.length) return j;
  while (k < text.length && OPENERS.has(text[k])) k++;
  if (k >= text.length || !isUpperOrDigit(text[k])) return -1; // "e.g. a red car"
  if (text[i] !== '.') return j;
  const word = wordBefore(text, i);
  if (word === '') return j;
  const lower = word.toLowerCase();
  if (ABBREVIATIONS.has(lower)) return -1;
  if (/^\p{Lu}$/u.test(word)) return -1; // an initial: "J. R. R. Tolkien"
  if (/^(\p{L}\.)+\p{L}$/u.test(word)) return -1; // a dotted acronym: "U.S.A. Today"
  return j;
}

/**
 * Splits text into sentences (trimmed, non-empty). Handles abbreviations ("e.g.", "Mr."),
 * initials, dotted acronyms, decimals ("3.5"), ellipses and closing quotes after the
 * terminator. A blank line separates sentences too.
 */
export function splitSentences(text: string): string[] {
  const out: string[] = [];
  let start = 0;
  const push = (end: number): void => {
    const s = text.slice(start, end).trim();
    if (s) out.push(s);
    start = end;
  };
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === '\n' && i + 1 < text.length && text[i + 1] === '\n') {
      push(i);
      continue;
    }
    if (c !== '.' && c !== '!' && c !== '?') continue;
    const end = sentenceEnd(text, i);
    if (end < 0) continue;
    push(end);
    i = end - 1;
  }
  push(text.length);
  return out;
}

/** The first sentence of text (the whole trimmed text when it has a single sentence). */
export function firstSentence(text: string): string {
  return splitSentences(text)[0] ?? '';
}
