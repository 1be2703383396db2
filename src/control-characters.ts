/** C0, DEL and C1: among them what the WHATWG URL parser drops from a URL without a word (a tab, a line break). */
export const CONTROL_CHARACTER = /[\u0000-\u001f\u007f-\u009f]/;
