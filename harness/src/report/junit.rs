//! The verdict as JUnit XML, so CI systems list each gate as a test case.
//!
//! Mapping (documented in docs/REPORT.md): a passed gate is a plain
//! `<testcase>`; a failed gate has a `<failure>`; a gate that could not be
//! decided (status unknown) has an `<error>`, because CI must not count it as
//! passed and "skipped" would. Not for: deciding the gates.

use anyhow::{Context, Result};
use quick_xml::Writer;
use quick_xml::events::{BytesDecl, BytesEnd, BytesStart, BytesText, Event};

use super::model::{GateRow, Status};

/// One `<testsuite>` named `suite` with a `<testcase>` per gate.
pub fn render(suite: &str, timestamp: &str, gates: &[GateRow]) -> Result<String> {
    let failures = gates.iter().filter(|g| g.status == Status::Fail).count().to_string();
    let errors = gates.iter().filter(|g| g.status == Status::Unknown).count().to_string();
    let tests = gates.len().to_string();
    let mut w = Writer::new_with_indent(Vec::new(), b' ', 2);
    w.write_event(Event::Decl(BytesDecl::new("1.0", Some("UTF-8"), None))).context("junit declaration")?;
    let counts = [("tests", tests.as_str()), ("failures", failures.as_str()), ("errors", errors.as_str())];
    let suites = BytesStart::new("testsuites").with_attributes([("name", "harness")].into_iter().chain(counts));
    w.write_event(Event::Start(suites)).context("junit testsuites")?;
    let suite_el = BytesStart::new("testsuite")
        .with_attributes([("name", suite), ("timestamp", timestamp), ("skipped", "0")].into_iter().chain(counts));
    w.write_event(Event::Start(suite_el)).context("junit testsuite")?;
    for g in gates {
        let case = BytesStart::new("testcase").with_attributes([("classname", "harness.gates"), ("name", &*g.gate)]);
        let child = match g.status {
            Status::Pass => None,
            Status::Fail => Some(("failure", "gate failed")),
            Status::Unknown => Some(("error", "gate could not be decided")),
        };
        match child {
            None => {
                w.write_event(Event::Empty(case)).context("junit testcase")?;
            }
            Some((tag, kind)) => {
                w.write_event(Event::Start(case)).context("junit testcase")?;
                let el = BytesStart::new(tag).with_attributes([("message", &*g.detail), ("type", kind)]);
                w.write_event(Event::Start(el)).context("junit failure")?;
                w.write_event(Event::Text(BytesText::new(&g.detail))).context("junit detail")?;
                w.write_event(Event::End(BytesEnd::new(tag))).context("junit failure end")?;
                w.write_event(Event::End(BytesEnd::new("testcase"))).context("junit testcase end")?;
            }
        }
    }
    w.write_event(Event::End(BytesEnd::new("testsuite"))).context("junit testsuite end")?;
    w.write_event(Event::End(BytesEnd::new("testsuites"))).context("junit testsuites end")?;
    let mut xml = String::from_utf8(w.into_inner()).context("junit xml is not utf-8")?;
    xml.push('\n');
    Ok(xml)
}

#[cfg(test)]
mod tests {
    use super::*;
    use quick_xml::Reader;

    type Element = (String, Vec<(String, String)>);

    /// Parse the XML back: (element name, attributes) for every start/empty element, text joined.
    fn parse(xml: &str) -> (Vec<Element>, String) {
        let mut reader = Reader::from_str(xml);
        let mut elements = Vec::new();
        let mut text = String::new();
        loop {
            match reader.read_event().expect("well-formed XML") {
                Event::Start(e) | Event::Empty(e) => {
                    let name = String::from_utf8(e.name().as_ref().to_vec()).unwrap();
                    let attrs = e
                        .attributes()
                        .map(|a| {
                            let a = a.unwrap();
                            let v = a.unescape_value().unwrap().into_owned();
                            (String::from_utf8(a.key.as_ref().to_vec()).unwrap(), v)
                        })
                        .collect();
                    elements.push((name, attrs));
                }
                Event::Text(t) => text.push_str(&t.unescape().unwrap()),
                Event::Eof => break,
                _ => {}
            }
        }
        (elements, text)
    }

    fn attr<'a>(el: &'a Element, key: &str) -> &'a str {
        el.1.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str()).unwrap_or_else(|| panic!("no {key} on {el:?}"))
    }

    #[test]
    fn one_case_per_gate_with_failure_and_error_and_escaping() {
        let gates = vec![
            GateRow { gate: "cluster: dropped <= 0".into(), status: Status::Pass, detail: "0 dropped".into() },
            GateRow {
                gate: "cluster p99 < single p99".into(),
                status: Status::Fail,
                detail: "p99 \"812 ms\" & rising <not ok>".into(),
            },
            GateRow { gate: "audit".into(), status: Status::Unknown, detail: "admin address unreachable".into() },
        ];
        let xml = render("blackfriday <&>", "2026-11-25T09:00:00Z", &gates).unwrap();
        assert!(!xml.contains("<not ok>"), "unescaped text in {xml}");
        let (els, text) = parse(&xml);
        let names: Vec<&str> = els.iter().map(|e| e.0.as_str()).collect();
        assert_eq!(names, ["testsuites", "testsuite", "testcase", "testcase", "failure", "testcase", "error"]);
        assert_eq!(attr(&els[0], "tests"), "3");
        assert_eq!(attr(&els[0], "failures"), "1");
        assert_eq!(attr(&els[0], "errors"), "1");
        assert_eq!(attr(&els[1], "name"), "blackfriday <&>");
        assert_eq!(attr(&els[2], "name"), "cluster: dropped <= 0");
        assert_eq!(attr(&els[4], "message"), "p99 \"812 ms\" & rising <not ok>");
        assert!(text.contains("p99 \"812 ms\" & rising <not ok>"));
        assert!(text.contains("admin address unreachable"));
    }

    #[test]
    fn no_gates_is_still_a_valid_suite() {
        let (els, _) = parse(&render("empty", "t", &[]).unwrap());
        assert_eq!(els.len(), 2);
        assert_eq!(attr(&els[0], "tests"), "0");
    }
}
