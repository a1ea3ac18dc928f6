//! `${VAR}` interpolation of the configuration text, done before YAML parsing.
//!
//! Syntax:
//! - `${VAR}`: the value of `VAR`; an error if it is unset (an empty value is kept).
//! - `${VAR:-default}`: the value of `VAR`, or `default` when it is unset **or empty**.
//! - `$${`: a literal `${`. Any other `$` is kept as is.
//!
//! Variable names are `[A-Za-z_][A-Za-z0-9_]*`. Lines whose first non-blank character is `#`
//! (YAML comments) are copied untouched, so commented-out examples need not resolve.
//!
//! Safety: a substituted value may not contain a line break (it could inject YAML keys). When
//! the placeholder sits inside a double-quoted scalar (an odd number of unescaped `"` precede it
//! on its line), `\` and `"` in the value are escaped so the value cannot end the string. Values
//! substituted into plain (unquoted) scalars are inserted verbatim, so quote placeholders whose
//! values may contain YAML syntax, e.g. `api_key: "${OPENAI_API_KEY}"`.
//!
//! Substitution never adds or removes lines, so line numbers in later errors match the file.

use crate::error::{ConfigError, ConfigErrors};

/// Replaces every `${VAR}` / `${VAR:-default}` in `text`, looking variables up with `env`.
///
/// Reports every problem at once (each with its 1-based line number). `env` is injectable so
/// tests need no process environment; [`crate::load_file`] uses `std::env::var`.
pub fn interpolate(
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<String, ConfigErrors> {
    let mut out = String::with_capacity(text.len());
    let mut errors = Vec::new();
    for (index, line) in text.split_inclusive('\n').enumerate() {
        let number = index + 1;
        if line.trim_start().starts_with('#') {
            out.push_str(line);
        } else {
            interpolate_line(line, number, env, &mut out, &mut errors);
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(ConfigErrors(errors))
    }
}

/// Interpolates one line (which may end with its `\n`) into `out`.
fn interpolate_line(
    line: &str,
    number: usize,
    env: &dyn Fn(&str) -> Option<String>,
    out: &mut String,
    errors: &mut Vec<ConfigError>,
) {
    let error = |message: String| ConfigError::Interpolation {
        line: number,
        message,
    };
    let bytes = line.as_bytes();
    // `literal` is the start of text not yet copied to `out`; `i` scans for `$`.
    let mut literal = 0;
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'$' {
            i += 1;
            continue;
        }
        let rest = &line[i..];
        if rest.starts_with("$${") {
            out.push_str(&line[literal..i]);
            out.push_str("${");
            i += 3;
            literal = i;
        } else if rest.starts_with("${") {
            out.push_str(&line[literal..i]);
            let body_start = i + 2;
            let Some(len) = line[body_start..].find('}') else {
                errors.push(error(
                    "unterminated `${` (expected `}` on the same line; write `$${` for a literal `${`)"
                        .to_owned(),
                ));
                // Keep the rest verbatim; the error already fails the load.
                literal = i;
                break;
            };
            let body = &line[body_start..body_start + len];
            match resolve(body, env) {
                Ok(value) => {
                    if inside_double_quotes(&line[..i]) {
                        push_escaped(out, &value);
                    } else {
                        out.push_str(&value);
                    }
                }
                Err(message) => errors.push(error(message)),
            }
            i = body_start + len + 1;
            literal = i;
        } else {
            i += 1;
        }
    }
    out.push_str(&line[literal..]);
}

/// The value of one `${...}` body (`VAR` or `VAR:-default`), or an error message.
fn resolve(body: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let (name, default) = match body.split_once(":-") {
        Some((name, default)) => (name, Some(default)),
        None => (body, None),
    };
    if !is_var_name(name) {
        return Err(format!(
            "invalid variable name in `${{{body}}}` (expected `${{NAME}}` or `${{NAME:-default}}`, \
             NAME made of letters, digits and `_`)"
        ));
    }
    let value = match (env(name), default) {
        (Some(value), Some(default)) if value.is_empty() => default.to_owned(),
        (Some(value), _) => value,
        (None, Some(default)) => default.to_owned(),
        (None, None) => {
            return Err(format!(
                "environment variable `{name}` is not set (use `${{{name}:-default}}` to give a default)"
            ))
        }
    };
    if value.contains(['\n', '\r']) {
        // Never echo the value: it may be a secret.
        return Err(format!(
            "the value of `{name}` contains a line break, which is not allowed in a substitution"
        ));
    }
    Ok(value)
}

/// `[A-Za-z_][A-Za-z0-9_]*`.
fn is_var_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Whether `prefix` (the line up to a placeholder) leaves us inside a double-quoted scalar:
/// an odd number of `"` not escaped by a backslash. A heuristic: it ignores single quotes.
fn inside_double_quotes(prefix: &str) -> bool {
    let mut inside = false;
    let mut escaped = false;
    for c in prefix.chars() {
        if escaped {
            escaped = false;
            continue;
        }
        match c {
            '\\' if inside => escaped = true,
            '"' => inside = !inside,
            _ => {}
        }
    }
    inside
}

/// Appends `value` escaped for a YAML double-quoted scalar (`\` and `"`).
fn push_escaped(out: &mut String, value: &str) {
    for c in value.chars() {
        if matches!(c, '\\' | '"') {
            out.push('\\');
        }
        out.push(c);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        }
    }

    fn run(text: &str, pairs: &[(&str, &str)]) -> Result<String, ConfigErrors> {
        interpolate(text, &env_of(pairs))
    }

    fn messages(errors: &ConfigErrors) -> Vec<(usize, String)> {
        errors
            .iter()
            .map(|e| match e {
                ConfigError::Interpolation { line, message } => (*line, message.clone()),
                other => panic!("unexpected error {other:?}"),
            })
            .collect()
    }

    #[test]
    fn substitutes_set_variables() {
        let out = run("a: ${A}\nb: x-${B}-y\n", &[("A", "1"), ("B", "two")]).unwrap();
        assert_eq!(out, "a: 1\nb: x-two-y\n");
    }

    #[test]
    fn text_without_placeholders_is_unchanged() {
        let text = "a: $5\nb: cost $ and $$ \r\nc: \"quoted\"";
        assert_eq!(run(text, &[]).unwrap(), text);
    }

    #[test]
    fn default_used_when_unset_or_empty() {
        let out = run(
            "a: ${UNSET:-d1}\nb: ${EMPTY:-d2}\nc: ${SET:-d3}\nd: ${UNSET:-}\n",
            &[("EMPTY", ""), ("SET", "v")],
        )
        .unwrap();
        assert_eq!(out, "a: d1\nb: d2\nc: v\nd: \n");
    }

    #[test]
    fn default_may_contain_colons_and_dashes() {
        let out = run("u: ${URL:-http://h:80/a-b}\n", &[]).unwrap();
        assert_eq!(out, "u: http://h:80/a-b\n");
    }

    #[test]
    fn empty_value_without_default_is_kept() {
        assert_eq!(run("a: '${E}'\n", &[("E", "")]).unwrap(), "a: ''\n");
    }

    #[test]
    fn missing_variable_names_it_and_the_line() {
        let err = run("a: 1\nb: 2\nkey: ${OPENAI_API_KEY}\n", &[]).unwrap_err();
        let msgs = messages(&err);
        assert_eq!(msgs.len(), 1);
        assert_eq!(msgs[0].0, 3);
        assert!(msgs[0].1.contains("`OPENAI_API_KEY`"), "{}", msgs[0].1);
        assert!(msgs[0].1.contains("not set"), "{}", msgs[0].1);
        assert!(err.to_string().starts_with("line 3: "), "{err}");
    }

    #[test]
    fn every_missing_variable_is_reported() {
        let err = run("a: ${A}\nb: ${B} ${C}\n", &[]).unwrap_err();
        let lines: Vec<usize> = messages(&err).iter().map(|(l, _)| *l).collect();
        assert_eq!(lines, vec![1, 2, 2]);
    }

    #[test]
    fn double_dollar_is_a_literal() {
        let out = run(
            "a: $${HOME}\nb: $${X:-y} ${X}\n",
            &[("X", "v"), ("HOME", "/root")],
        )
        .unwrap();
        assert_eq!(out, "a: ${HOME}\nb: ${X:-y} v\n");
        // `$$` not followed by `{` stays as is.
        assert_eq!(run("a: $$x\n", &[]).unwrap(), "a: $$x\n");
    }

    #[test]
    fn substituted_values_are_not_expanded_again() {
        let out = run("a: ${A}\n", &[("A", "${B} $${C}"), ("B", "no")]).unwrap();
        assert_eq!(out, "a: ${B} $${C}\n");
    }

    #[test]
    fn comment_lines_are_left_alone() {
        let text = "# key: ${NOT_SET}\n   #  ${ALSO_NOT_SET}\na: ${A}\n";
        let out = run(text, &[("A", "1")]).unwrap();
        assert_eq!(out, "# key: ${NOT_SET}\n   #  ${ALSO_NOT_SET}\na: 1\n");
    }

    #[test]
    fn newline_in_value_is_rejected_without_echoing_it() {
        for value in ["x\nadmin: true", "x\r\ny", "x\r"] {
            let err = run("a: 1\nb: \"${V}\"\n", &[("V", value)]).unwrap_err();
            let msgs = messages(&err);
            assert_eq!(msgs.len(), 1);
            assert_eq!(msgs[0].0, 2);
            assert!(msgs[0].1.contains("line break"), "{}", msgs[0].1);
            assert!(!msgs[0].1.contains("admin"), "{}", msgs[0].1);
        }
    }

    #[test]
    fn newline_in_default_is_impossible_but_value_checked_after_default() {
        // A default is on one line by construction; an env value with a newline is refused even
        // when a default exists.
        let err = run("a: ${V:-ok}\n", &[("V", "a\nb")]).unwrap_err();
        assert_eq!(err.len(), 1);
    }

    #[test]
    fn values_inside_double_quotes_are_escaped() {
        let out = run(
            "a: \"${V}\"\nb: ${V}\n\"c\": \"p-${V}\"\nd: \"esc\\\"aped ${V}\"\n",
            &[("V", r#"q"b\s"#)],
        )
        .unwrap();
        assert_eq!(
            out,
            "a: \"q\\\"b\\\\s\"\nb: q\"b\\s\n\"c\": \"p-q\\\"b\\\\s\"\nd: \"esc\\\"aped q\\\"b\\\\s\"\n"
        );
        // The escaped text parses back to the original value.
        let parsed: std::collections::BTreeMap<String, String> =
            serde_yaml_ng::from_str(&out).unwrap();
        assert_eq!(parsed["a"], r#"q"b\s"#);
        assert_eq!(parsed["c"], r#"p-q"b\s"#);
        assert_eq!(parsed["d"], r#"esc"aped q"b\s"#);
    }

    #[test]
    fn after_a_closed_quote_values_are_not_escaped() {
        let out = run("a: \"x\" ${V}\n", &[("V", "\"")]).unwrap();
        assert_eq!(out, "a: \"x\" \"\n");
    }

    #[test]
    fn bad_syntax_is_reported() {
        let err = run("a: ${NOPE\nb: ${}\nc: ${1X}\nd: ${A-b}\n", &[]).unwrap_err();
        let msgs = messages(&err);
        assert_eq!(msgs.len(), 4, "{msgs:?}");
        assert_eq!(msgs[0].0, 1);
        assert!(msgs[0].1.contains("unterminated"), "{}", msgs[0].1);
        assert_eq!(msgs[1].0, 2);
        assert!(msgs[1].1.contains("invalid variable name"), "{}", msgs[1].1);
        assert_eq!(msgs[2].0, 3);
        assert_eq!(msgs[3].0, 4);
    }

    #[test]
    fn line_count_is_preserved() {
        let text = "a: ${A}\n\n# ${X}\nb: ${B:-2}\n";
        let out = run(text, &[("A", "1")]).unwrap();
        assert_eq!(out.lines().count(), text.lines().count());
    }

    #[test]
    fn unicode_around_placeholders() {
        let out = run("é: \"ü${A}ß\"\n", &[("A", "ø")]).unwrap();
        assert_eq!(out, "é: \"üøß\"\n");
    }

    #[test]
    fn quote_detection() {
        assert!(!inside_double_quotes("a: "));
        assert!(inside_double_quotes("a: \""));
        assert!(!inside_double_quotes("a: \"x\" "));
        assert!(inside_double_quotes("a: \"x\\\""));
        assert!(!inside_double_quotes("a: \"x\\\\\""));
    }
}
