//! Request templates: paths, header values and bodies with placeholders.
//!
//! - `{{shopper}}`: the shopper id;
//! - `{{var.NAME}}`: a value extracted from an earlier response in the journey;
//! - `{{pick.LIST}}`: a random element of the scenario's `data.LIST`;
//! - `{{rand.A.B}}`: a random integer in A..=B;
//! - `{{idem}}`: this step's idempotency key.
//!
//! Randomness comes from the shopper's own rng, so a shopper's requests are
//! reproducible from its seed. Substituted values are escaped for where they go
//! (see [`Escape`]). Not for deciding which placeholders are allowed where:
//! `validate` checks that against the scenario.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;

use rand::{Rng as _, SeedableRng};

use crate::scenario::rng::Rng;

/// How substituted values are written into the rendered text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Escape {
    /// Verbatim (string bodies, where the author writes the JSON around values).
    None,
    /// Inside a JSON string literal: quotes, backslashes and control characters escaped.
    JsonString,
    /// In a URL path: anything but unreserved characters percent-encoded.
    Path,
    /// In a header value: verbatim, but CR, LF and NUL are refused.
    Header,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Lit(String),
    Shopper,
    Var(String),
    Pick(String),
    Rand(i64, i64),
    Idem,
}

/// A parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    source: String,
    escape: Escape,
    parts: Vec<Part>,
}

/// Why a template could not be rendered for a shopper.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    #[error("template {template:?}: variable {var:?} has not been extracted by an earlier step")]
    MissingVar { template: String, var: String },
    #[error("template {template:?}: data list {list:?} is missing or empty")]
    MissingList { template: String, list: String },
    #[error("template {template:?}: {{{{idem}}}} used but the step has no idempotency key")]
    NoIdempotencyKey { template: String },
    #[error("template {template:?}: the value {value:?} cannot go in a header (CR, LF or NUL)")]
    BadHeaderValue { template: String, value: String },
}

/// What a template refers to, for validation.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct References {
    pub vars: Vec<String>,
    pub lists: Vec<String>,
    pub idem: bool,
}

/// The per-shopper state templates render from.
#[derive(Debug, Clone)]
pub struct ShopperCtx {
    pub shopper: u64,
    pub rng: Rng,
    pub vars: HashMap<String, String>,
    pub idem: Option<String>,
}

impl ShopperCtx {
    /// A fresh context for a planned shopper (`seed` from `PlannedShopper::seed`).
    pub fn new(shopper: u64, seed: u64) -> Self {
        ShopperCtx { shopper, rng: Rng::seed_from_u64(seed), vars: HashMap::new(), idem: None }
    }

    /// A fresh idempotency key for one step of this shopper. Unique within a
    /// run (the shopper id and a draw from its rng are part of it) and across
    /// runs (a per-process nonce is too): a rerun against the same shop must
    /// never have an old order replayed for a new checkout. The rng draw keeps
    /// the shopper's later random values the same for a seed. Set it in `idem`
    /// before rendering and keep it for the step's retries.
    pub fn new_idempotency_key(&mut self, step: &str) -> String {
        let r: u64 = self.rng.random();
        let step = step.replace(|c: char| !c.is_ascii_alphanumeric(), "_");
        format!("{:08x}-{}-{step}-{r:016x}", run_nonce(), self.shopper)
    }
}

/// Differs between runs (processes): the start time and the pid.
fn run_nonce() -> u32 {
    static NONCE: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    *NONCE.get_or_init(|| {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        // Fold the 128-bit time and the pid into 32 bits; collisions need the same nanosecond and pid.
        let mixed = nanos ^ (nanos >> 32) ^ (nanos >> 64) ^ (u128::from(std::process::id()) << 7);
        mixed as u32
    })
}

/// Why `text` cannot be sent as (part of) an HTTP/1.1 request target
/// (RFC 9112 origin-form: RFC 3986 path and query characters, `%` followed by
/// two hex digits), or None if it can. CR and LF would end the request line.
pub fn request_target_problem(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        let ok = b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/?".contains(&b);
        if b == b'%' {
            let hex = |j: usize| bytes.get(j).is_some_and(u8::is_ascii_hexdigit);
            if !(hex(i + 1) && hex(i + 2)) {
                return Some(format!(
                    "\"%\" at byte {i} is not followed by two hex digits (write %25 for a percent sign)"
                ));
            }
        } else if !ok {
            let what = match b {
                b'\r' => "a carriage return (CR)".to_string(),
                b'\n' => "a line feed (LF)".to_string(),
                b' ' => "a space".to_string(),
                0x21..=0x7e => format!("{:?}", char::from(b)),
                _ => format!("the byte 0x{b:02X}"),
            };
            return Some(format!(
                "{what} at byte {i} is not allowed in a request target; percent-encode it (e.g. %{b:02X})"
            ));
        }
    }
    None
}

impl Template {
    /// Parses `text`; the error says what is wrong with which placeholder.
    pub fn parse(text: &str, escape: Escape) -> Result<Template, String> {
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find("{{") {
            if open > 0 {
                parts.push(Part::Lit(rest[..open].to_string()));
            }
            let after = &rest[open + 2..];
            let close = after.find("}}").ok_or_else(|| {
                format!("\"{{{{\" at byte {} is never closed with \"}}}}\"", text.len() - rest.len() + open)
            })?;
            parts.push(placeholder(after[..close].trim())?);
            rest = &after[close + 2..];
        }
        if !rest.is_empty() {
            parts.push(Part::Lit(rest.to_string()));
        }
        if escape == Escape::Path {
            // Placeholders are percent-encoded when rendered; what is written
            // around them goes to the wire as it is, so it must be a valid
            // request target (regression, issue 18 item 2: a CR LF in a path
            // sent a header of its own).
            for p in &parts {
                if let Part::Lit(lit) = p
                    && let Some(problem) = request_target_problem(lit)
                {
                    return Err(problem);
                }
            }
        }
        Ok(Template { source: text.to_string(), escape, parts })
    }

    /// A template without placeholders: `text` is used as it is.
    pub fn literal(text: &str, escape: Escape) -> Template {
        let parts = if text.is_empty() { Vec::new() } else { vec![Part::Lit(text.to_string())] };
        Template { source: text.to_string(), escape, parts }
    }

    /// The text as written.
    pub fn source(&self) -> &str {
        &self.source
    }

    pub fn escape(&self) -> Escape {
        self.escape
    }

    /// True when the template has no placeholders.
    pub fn is_literal(&self) -> bool {
        self.parts.iter().all(|p| matches!(p, Part::Lit(_)))
    }

    pub fn references(&self) -> References {
        let mut r = References::default();
        for p in &self.parts {
            match p {
                Part::Var(v) => r.vars.push(v.clone()),
                Part::Pick(l) => r.lists.push(l.clone()),
                Part::Idem => r.idem = true,
                _ => {}
            }
        }
        r
    }

    pub fn render(
        &self,
        data: &BTreeMap<String, Vec<serde_json::Value>>,
        ctx: &mut ShopperCtx,
    ) -> Result<String, RenderError> {
        let mut out = String::with_capacity(self.source.len() + 16);
        for p in &self.parts {
            match p {
                Part::Lit(s) => out.push_str(s),
                Part::Shopper => {
                    let _ = write!(out, "{}", ctx.shopper);
                }
                Part::Rand(a, b) => {
                    let v = ctx.rng.random_range(*a..=*b);
                    let _ = write!(out, "{v}");
                }
                Part::Var(name) => {
                    let v = ctx
                        .vars
                        .get(name)
                        .ok_or_else(|| RenderError::MissingVar { template: self.source.clone(), var: name.clone() })?;
                    self.push_value(&mut out, v)?;
                }
                Part::Pick(list) => {
                    let items = data.get(list).filter(|l| !l.is_empty()).ok_or_else(|| RenderError::MissingList {
                        template: self.source.clone(),
                        list: list.clone(),
                    })?;
                    let item = &items[ctx.rng.random_range(0..items.len())];
                    let text = match item {
                        serde_json::Value::String(s) => s.clone(),
                        other => other.to_string(),
                    };
                    self.push_value(&mut out, &text)?;
                }
                Part::Idem => {
                    let key = ctx
                        .idem
                        .clone()
                        .ok_or_else(|| RenderError::NoIdempotencyKey { template: self.source.clone() })?;
                    self.push_value(&mut out, &key)?;
                }
            }
        }
        Ok(out)
    }

    fn push_value(&self, out: &mut String, v: &str) -> Result<(), RenderError> {
        match self.escape {
            Escape::None => out.push_str(v),
            Escape::JsonString => {
                // serde_json writes a quoted, escaped string; drop the quotes.
                let quoted = serde_json::Value::String(v.to_string()).to_string();
                out.push_str(&quoted[1..quoted.len() - 1]);
            }
            Escape::Path => {
                for b in v.bytes() {
                    if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
                        out.push(char::from(b));
                    } else {
                        let _ = write!(out, "%{b:02X}");
                    }
                }
            }
            Escape::Header => {
                if v.contains(['\r', '\n', '\0']) {
                    return Err(RenderError::BadHeaderValue { template: self.source.clone(), value: v.to_string() });
                }
                out.push_str(v);
            }
        }
        Ok(())
    }
}

fn placeholder(inner: &str) -> Result<Part, String> {
    const HELP: &str = "expected {{shopper}}, {{var.NAME}}, {{pick.LIST}}, {{rand.A.B}} or {{idem}}";
    let name_ok = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    match inner {
        "shopper" => return Ok(Part::Shopper),
        "idem" => return Ok(Part::Idem),
        _ => {}
    }
    if let Some(v) = inner.strip_prefix("var.") {
        return if name_ok(v) {
            Ok(Part::Var(v.to_string()))
        } else {
            Err(format!("bad variable name in {{{{{inner}}}}}"))
        };
    }
    if let Some(l) = inner.strip_prefix("pick.") {
        return if name_ok(l) {
            Ok(Part::Pick(l.to_string()))
        } else {
            Err(format!("bad list name in {{{{{inner}}}}}"))
        };
    }
    if let Some(range) = inner.strip_prefix("rand.") {
        // Split at the dot that separates the bounds; a bound may be negative.
        let bad = || format!("{{{{{inner}}}}} needs two integers A.B with A <= B, e.g. {{{{rand.1.5}}}}");
        let (a, b) = range.split_once('.').ok_or_else(bad)?;
        let a: i64 = a.parse().map_err(|_| bad())?;
        let b: i64 = b.parse().map_err(|_| bad())?;
        return if a <= b { Ok(Part::Rand(a, b)) } else { Err(bad()) };
    }
    Err(format!("unknown placeholder {{{{{inner}}}}} ({HELP})"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn data() -> BTreeMap<String, Vec<serde_json::Value>> {
        let mut d = BTreeMap::new();
        d.insert("skus".to_string(), vec![json!("sku-0001"), json!("sku-0002")]);
        d.insert("nums".to_string(), vec![json!(7)]);
        d
    }

    #[test]
    fn renders_every_placeholder() {
        let mut ctx = ShopperCtx::new(42, 9);
        ctx.vars.insert("order".into(), "17".into());
        ctx.idem = Some("k-1".into());
        let t = Template::parse("/x/{{shopper}}/{{var.order}}/{{pick.nums}}/{{idem}}", Escape::Path).unwrap();
        assert_eq!(t.render(&data(), &mut ctx).unwrap(), "/x/42/17/7/k-1");
        let t = Template::parse("{{pick.skus}}", Escape::None).unwrap();
        let v = t.render(&data(), &mut ctx).unwrap();
        assert!(v == "sku-0001" || v == "sku-0002", "{v}");
        let t = Template::parse("{{ rand.-2.3 }}", Escape::None).unwrap();
        for _ in 0..100 {
            let n: i64 = t.render(&data(), &mut ctx).unwrap().parse().unwrap();
            assert!((-2..=3).contains(&n));
        }
    }

    #[test]
    fn same_seed_same_render() {
        let t = Template::parse("{{pick.skus}}-{{rand.0.1000000}}", Escape::None).unwrap();
        let a: Vec<_> = {
            let mut c = ShopperCtx::new(1, 5);
            (0..10).map(|_| t.render(&data(), &mut c).unwrap()).collect()
        };
        let b: Vec<_> = {
            let mut c = ShopperCtx::new(1, 5);
            (0..10).map(|_| t.render(&data(), &mut c).unwrap()).collect()
        };
        let c: Vec<_> = {
            let mut c = ShopperCtx::new(1, 6);
            (0..10).map(|_| t.render(&data(), &mut c).unwrap()).collect()
        };
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn a_path_that_is_no_request_target_is_refused() {
        // Regression (issue 18, item 2): "GET /x\r\nX-Injected: yes" reached the wire.
        let e = Template::parse("/x\r\nX-Injected: yes", Escape::Path).unwrap_err();
        assert!(e.contains("carriage return (CR) at byte 2"), "{e}");
        assert!(Template::parse("/a b", Escape::Path).unwrap_err().contains("a space"));
        assert!(Template::parse("/a#frag", Escape::Path).unwrap_err().contains("'#'"));
        assert!(Template::parse("/caf\u{e9}", Escape::Path).unwrap_err().contains("0xC3"));
        assert!(Template::parse("/100%", Escape::Path).unwrap_err().contains("two hex digits"));
        // What a path may hold, placeholders included (rendered percent-encoded).
        let t = Template::parse("/p/{{var.v}}?q=%2F&x=a:b@c,d;e=f!$'()*+~", Escape::Path).unwrap();
        let mut ctx = ShopperCtx::new(1, 1);
        ctx.vars.insert("v".into(), "a\r\nb c".into());
        assert_eq!(t.render(&data(), &mut ctx).unwrap(), "/p/a%0D%0Ab%20c?q=%2F&x=a:b@c,d;e=f!$'()*+~");
        // Bodies and headers have their own rules.
        assert!(Template::parse("a b\n", Escape::None).is_ok());
    }

    #[test]
    fn escapes_for_context() {
        let mut ctx = ShopperCtx::new(1, 1);
        ctx.vars.insert("v".into(), "a\"b/c d\n".into());
        let json = Template::parse(r#"{"x":"{{var.v}}"}"#, Escape::JsonString).unwrap();
        let out = json.render(&data(), &mut ctx).unwrap();
        let parsed: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(parsed["x"], "a\"b/c d\n");
        let path = Template::parse("/p/{{var.v}}", Escape::Path).unwrap();
        assert_eq!(path.render(&data(), &mut ctx).unwrap(), "/p/a%22b%2Fc%20d%0A");
        let header = Template::parse("{{var.v}}", Escape::Header).unwrap();
        assert!(matches!(header.render(&data(), &mut ctx), Err(RenderError::BadHeaderValue { .. })));
    }

    #[test]
    fn render_errors_name_the_problem() {
        let mut ctx = ShopperCtx::new(1, 1);
        let t = Template::parse("{{var.order}}", Escape::None).unwrap();
        assert_eq!(
            t.render(&data(), &mut ctx),
            Err(RenderError::MissingVar { template: "{{var.order}}".into(), var: "order".into() })
        );
        let t = Template::parse("{{pick.nope}}", Escape::None).unwrap();
        assert!(matches!(t.render(&data(), &mut ctx), Err(RenderError::MissingList { .. })));
        let t = Template::parse("{{idem}}", Escape::None).unwrap();
        assert!(matches!(t.render(&data(), &mut ctx), Err(RenderError::NoIdempotencyKey { .. })));
    }

    #[test]
    fn idempotency_keys_differ_per_step_and_shopper_and_keep_the_rng_in_step() {
        let mut a = ShopperCtx::new(1, 5);
        let mut b = ShopperCtx::new(2, 5);
        let (ka1, ka2, kb) = (
            a.new_idempotency_key("check out"),
            a.new_idempotency_key("check out"),
            b.new_idempotency_key("check out"),
        );
        assert_ne!(ka1, ka2);
        assert_ne!(ka1, kb);
        assert!(ka1.contains("-1-check_out-"), "{ka1}");
        // One draw per key, as with any other random value.
        let mut c = ShopperCtx::new(1, 5);
        let _: u64 = c.rng.random();
        let _: u64 = c.rng.random();
        let t = Template::parse("{{rand.0.1000000}}", Escape::None).unwrap();
        assert_eq!(t.render(&data(), &mut a).unwrap(), t.render(&data(), &mut c).unwrap());
    }

    #[test]
    fn parse_errors() {
        for (text, needle) in [
            ("/a/{{shopper", "never closed"),
            ("{{teapot}}", "unknown placeholder {{teapot}}"),
            ("{{rand.5.1}}", "A <= B"),
            ("{{rand.x.1}}", "two integers"),
            ("{{var.}}", "bad variable name"),
            ("{{pick.a b}}", "bad list name"),
        ] {
            let err = Template::parse(text, Escape::None).unwrap_err();
            assert!(err.contains(needle), "{text}: {err}");
        }
        let t = Template::parse("plain } { text", Escape::None).unwrap();
        assert!(t.is_literal());
        let refs = Template::parse("{{var.a}}{{pick.b}}{{idem}}", Escape::None).unwrap().references();
        assert_eq!(refs, References { vars: vec!["a".into()], lists: vec!["b".into()], idem: true });
    }
}
