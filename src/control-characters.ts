/** C0, DEL and C1: among them what the WHATWG URL parser drops from a URL without a word (a tab, a line break). */
export const CONTROL_CHARACTER = /[\u0000-\u001f\u007f-\u009f]/;

/**
 * Unicode's spaces and separators and its invisible characters (U+00A0, U+2028, U+200B, a right-to-left override,
 * U+034F, the Hangul fillers), and U+2800 (the blank Braille pattern, drawn as nothing, in none of those
 * properties), as the inside of a character class of a `u` regular expression.
 */
export const INVISIBLE_CLASS = '\\p{Z}\\p{Cf}\\p{Default_Ignorable_Code_Point}\\u2800';
