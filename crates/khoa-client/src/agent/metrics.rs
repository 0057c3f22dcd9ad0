//! `GET /_khoa/metrics`: per upstream, the requests forwarded, the answers by status class,
//! and what its token source did ([`crate::TokenSource::stats`], read at each scrape).

use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

use crate::{Stats, TokenSource};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct UpstreamLabels {
    upstream: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AnswerLabels {
    upstream: String,
    /// `2xx` … `5xx`.
    class: String,
}

pub(crate) struct Metrics {
    registry: Registry,
    requests: Family<UpstreamLabels, Counter>,
    answers: Family<AnswerLabels, Counter>,
}

impl Metrics {
    /// The metrics of `sources`, by upstream name.
    pub(crate) fn new(sources: Vec<(String, TokenSource)>) -> Metrics {
        let mut registry = Registry::default();
        let requests = Family::<UpstreamLabels, Counter>::default();
        let answers = Family::<AnswerLabels, Counter>::default();
        registry.register(
            "khoa_agent_requests",
            "Requests forwarded to an upstream (retries after a 401 not counted again)",
            requests.clone(),
        );
        registry.register(
            "khoa_agent_responses",
            "Answers to callers by status class, the agent's own errors included",
            answers.clone(),
        );
        registry.register_collector(Box::new(TokenStats(Arc::new(sources))));
        Metrics {
            registry,
            requests,
            answers,
        }
    }

    pub(crate) fn forwarded(&self, upstream: &str) {
        self.requests
            .get_or_create(&UpstreamLabels {
                upstream: upstream.to_owned(),
            })
            .inc();
    }

    pub(crate) fn answered(&self, upstream: &str, status: u16) {
        self.answers
            .get_or_create(&AnswerLabels {
                upstream: upstream.to_owned(),
                class: format!("{}xx", status / 100),
            })
            .inc();
    }

    /// The OpenMetrics text.
    pub(crate) fn render(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// A counter read from [`Stats`]: its name, its help, its value.
type Series = (&'static str, &'static str, fn(&Stats) -> u64);

/// The token sources' own counts, read when scraped rather than mirrored into counters.
#[derive(Debug)]
struct TokenStats(Arc<Vec<(String, TokenSource)>>);

impl Collector for TokenStats {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let all: Vec<(UpstreamLabels, Stats)> = self
            .0
            .iter()
            .map(|(name, source)| {
                let labels = UpstreamLabels {
                    upstream: name.clone(),
                };
                (labels, source.stats())
            })
            .collect();
        let series: [Series; 6] = [
            (
                "khoa_agent_unauthorized_retries",
                "Requests sent once more with a new token after the upstream answered 401",
                |s| s.retries,
            ),
            (
                "khoa_agent_token_calls",
                "Requests sent to the upstream's token endpoint",
                |s| s.token_calls,
            ),
            ("khoa_agent_token_logins", "Tokens got by logging in", |s| {
                s.logins
            }),
            (
                "khoa_agent_token_refreshes",
                "Tokens got with a refresh token",
                |s| s.refreshes,
            ),
            (
                "khoa_agent_token_failures",
                "Token calls that failed",
                |s| s.failures,
            ),
            (
                "khoa_agent_token_invalidations",
                "Tokens thrown away after the upstream refused them",
                |s| s.invalidations,
            ),
        ];
        for (name, help, value) in series {
            let counter = ConstCounter::new(0u64);
            let mut family = encoder.encode_descriptor(name, help, None, counter.metric_type())?;
            for (labels, stats) in &all {
                ConstCounter::new(value(stats)).encode(family.encode_family(labels)?)?;
            }
        }
        Ok(())
    }
}
