//! `bench status-counters`, and reading a runtime's own pull counters.
//!
//! strata's `Status(verbose=true)` answers `info["info"]`, a JSON document with
//! cumulative `pulls.bytesFetched` and `pulls.layersFetched`. Other runtimes
//! (containerd) have no such key; for them the counters are `None` and the
//! bytes must be measured elsewhere (at the registry).

use anyhow::Context as _;
use k8s_cri::v1::StatusRequest;

use super::Target;
use crate::client::Cri;

/// Cumulative registry traffic a runtime reports about its own pulls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PullCounters {
    pub bytes_fetched: u64,
    pub layers_fetched: u64,
}

/// The raw `info["info"]` of `Status(verbose=true)`, if the runtime sends one.
pub async fn verbose_info(cri: &Cri) -> anyhow::Result<Option<String>> {
    let resp = cri
        .runtime
        .clone()
        .status(StatusRequest { verbose: true })
        .await
        .with_context(|| format!("{}: Status(verbose)", cri.endpoint))?
        .into_inner();
    Ok(resp.info.get("info").cloned())
}

/// The runtime's pull counters, or `None` when it does not report them.
pub async fn pull_counters(cri: &Cri) -> anyhow::Result<Option<PullCounters>> {
    let Some(info) = verbose_info(cri).await? else {
        return Ok(None);
    };
    Ok(
        match (
            json_u64(&info, "bytesFetched"),
            json_u64(&info, "layersFetched"),
        ) {
            (Some(bytes_fetched), Some(layers_fetched)) => Some(PullCounters {
                bytes_fetched,
                layers_fetched,
            }),
            _ => None,
        },
    )
}

/// Prints, per endpoint, one JSON line `{"runtime": LABEL, "endpoint": E,
/// "info": INFO}` where INFO is the runtime's verbose `info["info"]` document
/// verbatim, or `null` when it has none (scripts read it with jq).
pub async fn status_counters(targets: &[Target]) -> anyhow::Result<()> {
    for t in targets {
        let info = verbose_info(&t.cri).await?;
        let info = match info.as_deref().map(str::trim) {
            Some(s) if s.starts_with('{') => s.to_owned(),
            Some(s) => json_string(s),
            None => "null".to_owned(),
        };
        println!(
            "{{\"runtime\":{},\"endpoint\":{},\"info\":{info}}}",
            json_string(&t.label),
            json_string(&t.cri.endpoint)
        );
    }
    Ok(())
}

/// The first unsigned integer value of `"key":` in a JSON document. The
/// conformance client has no JSON parser, and these keys are unique in
/// strata's document; a missing key or non-integer value gives `None`.
fn json_u64(doc: &str, key: &str) -> Option<u64> {
    let needle = format!("\"{key}\"");
    let rest = &doc[doc.find(&needle)? + needle.len()..];
    let rest = rest.trim_start().strip_prefix(':')?.trim_start();
    let end = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

/// `s` as a JSON string literal.
fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_counters_from_strata_info() {
        let doc = r#"{"config":{"root":"/r"},"pulls":{"layersFetched":5,"bytesFetched": 209715200},"rpcDurations":{}}"#;
        assert_eq!(json_u64(doc, "bytesFetched"), Some(209_715_200));
        assert_eq!(json_u64(doc, "layersFetched"), Some(5));
        assert_eq!(json_u64(doc, "missing"), None);
        assert_eq!(json_u64(r#"{"bytesFetched":"x"}"#, "bytesFetched"), None);
    }

    #[test]
    fn quotes_json_strings() {
        assert_eq!(json_string("a\"b\\c\n"), r#""a\"b\\c\u000a""#);
    }
}
