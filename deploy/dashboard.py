"""The Grafana dashboard (deploy/grafana/convoscope.json), described compactly: one row per pipeline stage.

Golden signals per stage: traffic (streams, records/s), latency (histogram quantiles), errors (skipped, refused,
retried records), saturation (consumer lag, CPU per audio second, memory). Metric names are the ones the code
exports (tests/deploy checks every ``convoscope_*`` name used here against the Prometheus registry), plus the
standard process metrics and ``kafka_consumergroup_lag`` from the Kafka exporter (Strimzi's ``kafkaExporter``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["dashboard"]

NS = 'namespace="$namespace"'
UID = "convoscope-pipeline"
FULL_WIDTH = 24


@dataclass(frozen=True)
class Panel:
    title: str
    exprs: tuple[tuple[str, str], ...]
    """(PromQL, legend) pairs."""
    unit: str = "short"
    description: str = ""
    width: int = 8
    kind: str = "timeseries"


@dataclass(frozen=True)
class Row:
    title: str
    panels: tuple[Panel, ...] = field(default_factory=tuple)


def _quantiles(metric: str, by: str = "", selector: str = NS) -> tuple[tuple[str, str], ...]:
    group = f"le{', ' + by if by else ''}"
    legend = f"{{{{{by}}}}} " if by else ""
    return tuple(
        (f"histogram_quantile({q}, sum by ({group}) (rate({metric}_bucket{{{selector}}}[$__rate_interval])))",
         f"{legend}p{round(q * 100)}")
        for q in (0.5, 0.95, 0.99)
    )


def _lag(group_regex: str) -> tuple[tuple[str, str], ...]:
    return ((f'sum by (consumergroup) (kafka_consumergroup_lag{{{NS}, consumergroup=~"{group_regex}"}})',
             "{{consumergroup}}"),)


ROWS: tuple[Row, ...] = (
    Row("Gateway: streams in, results out", (
        Panel("Active streams", ((f"sum(convoscope_gateway_active_streams{{{NS}}})", "all gateways"),
                                 (f"sum by (pod) (convoscope_gateway_active_streams{{{NS}}})", "{{pod}}")),
              description="WebSocket streams between start_request and their end (the demand on transcription)."),
        Panel("Audio accepted", ((f"sum(rate(convoscope_gateway_audio_bytes_total{{{NS}}}[$__rate_interval]))",
                                  "bytes/s"),), unit="Bps"),
        Panel("Client errors by message",
              ((f"sum by (message) (rate(convoscope_gateway_client_errors_total{{{NS}}}[$__rate_interval]))",
                "{{message}}"),), unit="reqps"),
        Panel("End of utterance → final at the client", _quantiles("convoscope_gateway_final_delivery_seconds"),
              unit="s", description="What a live user waits for a final message. SLO: 99 % within 3 s."),
        Panel("Results pushed to live clients",
              ((f"sum by (kind) (rate(convoscope_gateway_results_sent_total{{{NS}}}[$__rate_interval]))",
                "{{kind}}"),), unit="ops"),
        Panel("Audio awaiting the broker",
              ((f"sum by (pod) (convoscope_gateway_buffered_bytes{{{NS}}})", "{{pod}}"),), unit="bytes",
              description="Held within CONVOSCOPE_GATEWAY_BUFFER_BYTES per gateway; near it, the broker is stalling "
                          "and streams are held back (docs/operations.md#gateway-faults)."),
        Panel("Streams of dead replicas ended",
              ((f"sum(increase(convoscope_gateway_streams_reaped_total{{{NS}}}[$__rate_interval]))", "streams"),),
              unit="short", description="Leases that ran out: a gateway died (or lost the database) with streams on."),
        Panel("Gateway CPU and memory",
              ((f'sum by (pod) (rate(process_cpu_seconds_total{{{NS}, job=~"convoscope-(gateway|api)"}}'
                f"[$__rate_interval]))", "{{pod}} CPU"),), unit="short"),
    )),
    Row("Telephony (SIP gateway)", (
        Panel("Active calls", ((f"sum(convoscope_sip_active_calls{{{NS}}})", "all"),
                               (f"sum by (pod) (convoscope_sip_active_calls{{{NS}}})", "{{pod}}"))),
        Panel("Calls ended, by status",
              ((f"sum by (direction, status) (increase(convoscope_sip_calls_total{{{NS}}}[$__rate_interval]))",
                "{{direction}} {{status}}"),), unit="short"),
        Panel("RTP packet loss",
              ((f"sum(rate(convoscope_sip_rtp_lost_total{{{NS}}}[$__rate_interval])) / "
                f"(sum(rate(convoscope_sip_rtp_packets_total{{{NS}}}[$__rate_interval])) + "
                f"sum(rate(convoscope_sip_rtp_lost_total{{{NS}}}[$__rate_interval])))", "lost"),),
              unit="percentunit", description="Counted when a call leg ends; a few percent is audible."),
        Panel("RTP packet → audio frame published", _quantiles("convoscope_sip_frame_delay_seconds"), unit="s"),
        Panel("Audio frames published",
              ((f"sum(rate(convoscope_sip_frames_total{{{NS}}}[$__rate_interval]))", "frames/s"),
               (f"sum(rate(convoscope_sip_rtp_packets_total{{{NS}}}[$__rate_interval]))", "RTP packets/s")),
              unit="ops"),
    )),
    Row("Async API (recorded audio jobs)", (
        Panel("Job status changes",
              ((f"sum by (status) (increase(convoscope_jobs_transitions_total{{{NS}}}[$__rate_interval]))",
                "{{status}}"),), unit="short", width=12),
        Panel("Job webhooks",
              ((f"sum by (outcome) (increase(convoscope_jobs_webhooks_total{{{NS}}}[$__rate_interval]))",
                "{{outcome}}"),), unit="short", width=12),
    )),
    Row("Transcription (Whisper)", (
        Panel("Streams held per worker", ((f"sum by (pod) (convoscope_transcribe_active_streams{{{NS}}})",
                                           "{{pod}}"),)),
        Panel("Audio transcribed vs real time",
              ((f"sum(rate(convoscope_transcribe_audio_seconds_total{{{NS}}}[$__rate_interval]))",
                "audio s per s (all workers)"),),
              description="Seconds of audio consumed per wall second; below the number of active streams means "
                          "the workers fall behind real time."),
        Panel("CPU seconds per audio second (ASR cost)",
              ((f'sum by (pod) (rate(process_cpu_seconds_total{{{NS}, job="convoscope-transcribe"}}'
                f"[$__rate_interval])) / sum by (pod) (rate(convoscope_transcribe_audio_seconds_total{{{NS}}}"
                f"[$__rate_interval]))", "{{pod}}"),),
              description="Measured 0.15-0.53 for tiny.en on 2 cores; a worker near its CPU limit cannot keep up."),
        Panel("End of utterance → final acknowledged", _quantiles("convoscope_transcribe_final_delay_seconds"),
              unit="s"),
        Panel("Decode time", _quantiles("convoscope_transcribe_decode_seconds", "kind"), unit="s"),
        Panel("Finals, interims, discarded speculative finals, empty finals", (
            (f"sum(rate(convoscope_transcribe_finals_total{{{NS}}}[$__rate_interval]))", "finals"),
            (f"sum(rate(convoscope_transcribe_interims_total{{{NS}}}[$__rate_interval]))", "interims"),
            (f"sum(rate(convoscope_transcribe_speculative_discarded_total{{{NS}}}[$__rate_interval]))",
             "speculative discarded"),
            (f"sum(rate(convoscope_transcribe_empty_finals_total{{{NS}}}[$__rate_interval]))",
             "utterances ≥ 1 s heard as no text"),
        ), unit="ops"),
        Panel("Audio consumer lag", _lag("convoscope-transcribe"), unit="short",
              description="Audio records not yet read; growing lag means live captions fall behind."),
        Panel("Audio held in memory", ((f"sum by (pod) (convoscope_transcribe_buffered_audio_seconds{{{NS}}})",
                                        "{{pod}}"),), unit="s",
              description="Utterances waiting for their final, and the context before them: 64 KiB per second. "
                          "A worker that cannot keep up stops reading audio rather than growing this without bound."),
    )),
    Row("Insights (text processors)", (
        Panel("Transcripts handled",
              ((f"sum by (processor, outcome) (rate(convoscope_insights_records_total{{{NS}}}[$__rate_interval]))",
                "{{processor}} {{outcome}}"),), unit="ops"),
        Panel("Batch time", _quantiles("convoscope_insights_batch_seconds", "processor"), unit="s"),
        Panel("Results found",
              ((f"sum by (processor) (rate(convoscope_insights_found_total{{{NS}}}[$__rate_interval]))",
                "{{processor}}"),), unit="ops"),
        Panel("Consumer lag", _lag("convoscope-insights-.*"), unit="short"),
    )),
    Row("Analytics", (
        Panel("Finals seen",
              ((f"sum by (outcome) (rate(convoscope_analytics_finals_total{{{NS}}}[$__rate_interval]))",
                "{{outcome}}"),), unit="ops"),
        Panel("Analytics records produced",
              ((f"sum(rate(convoscope_analytics_records_total{{{NS}}}[$__rate_interval]))", "records"),), unit="ops"),
        Panel("Consumer lag", _lag("convoscope-analytics"), unit="short"),
    )),
    Row("Store (SQL sink)", (
        Panel("Records by outcome",
              ((f"sum by (topic, outcome) (rate(convoscope_store_records_total{{{NS}}}[$__rate_interval]))",
                "{{topic}} {{outcome}}"),), unit="ops",
              description="Anything but 'stored' was skipped (undecodable or refused by the database)."),
        Panel("Batch write time (retries included)", _quantiles("convoscope_store_batch_seconds"), unit="s"),
        Panel("Database retries", ((f"sum(rate(convoscope_store_db_retries_total{{{NS}}}[$__rate_interval]))",
                                    "retries"),), unit="ops",
              description="Non-zero while the database is unreachable; records wait, nothing is skipped."),
        Panel("Consumer lag", _lag("convoscope-store"), unit="short"),
    )),
    Row("Summary emails (sendSummaryEmail)", (
        Panel("Emails by outcome",
              ((f"sum by (outcome) (rate(convoscope_email_emails_total{{{NS}}}[$__rate_interval]))",
                "{{outcome}}"),), unit="ops",
              description="'retry': an attempt failed and another follows; 'failed': given up (the API's "
                          "/v1/conversations/{id}/emails shows why)."),
        Panel("SMTP send time", _quantiles("convoscope_email_send_seconds"), unit="s"),
        Panel("Completed conversations handled",
              ((f"sum by (outcome) (rate(convoscope_email_completions_total{{{NS}}}[$__rate_interval]))",
                "{{outcome}}"),), unit="ops",
              description="no_request: no email was asked for; already_done: sent or failed before (a re-read)."),
        Panel("Consumer lag", _lag("convoscope-email"), unit="short"),
    )),
    Row("Webhooks", (
        Panel("Delivery attempts by outcome",
              ((f"sum by (outcome) (rate(convoscope_webhooks_deliveries_total{{{NS}}}[$__rate_interval]))",
                "{{outcome}}"),
               (f"sum(rate(convoscope_webhooks_deadletters_total{{{NS}}}[$__rate_interval]))", "dead-lettered")),
              unit="ops",
              description="'retry': the receiver failed (5xx, 408, 429, timeout) and gets it again later; 'dead': "
                          "refused with another 4xx or out of attempts (on convoscope.webhooks.deadletter.v1)."),
        Panel("Queued to delivered", _quantiles("convoscope_webhooks_delivery_seconds"), unit="s",
              description="From queueing an event to its successful delivery, retries included."),
        Panel("Receiver response time", _quantiles("convoscope_webhooks_request_seconds"), unit="s"),
        Panel("Outbox",
              ((f"max(convoscope_webhooks_outbox_pending{{{NS}}})", "pending (all webhooks)"),
               (f"sum(convoscope_webhooks_in_flight{{{NS}}})", "being sent")), unit="short",
              description="Pending grows while receivers fail or are slow; the pipeline is not slowed by it."),
        Panel("Events read and queued",
              ((f"sum by (type) (rate(convoscope_webhooks_events_total{{{NS}}}[$__rate_interval]))", "{{type}}"),
               (f"sum(rate(convoscope_webhooks_queued_total{{{NS}}}[$__rate_interval]))", "queued (webhook x event)"),
               (f"sum(rate(convoscope_webhooks_log_expired_total{{{NS}}}[$__rate_interval]))",
                "removed from the delivery log")),
              unit="ops"),
        Panel("Consumer lag", _lag("convoscope-webhooks"), unit="short"),
    )),
    Row("Processes", (
        Panel("CPU by pod", ((f'sum by (pod) (rate(process_cpu_seconds_total{{{NS}, job=~"convoscope-.*"}}'
                              f"[$__rate_interval]))", "{{pod}}"),), width=12),
        Panel("Resident memory by pod",
              ((f'sum by (pod) (process_resident_memory_bytes{{{NS}, job=~"convoscope-.*"}})', "{{pod}}"),),
              unit="bytes", width=12),
        Panel("Consumer lag per partition (top 20)",
              ((f'topk(20, kafka_consumergroup_lag{{{NS}, consumergroup=~"convoscope-.*"}})',
                "{{consumergroup}} {{topic}}[{{partition}}]"),), width=FULL_WIDTH),
    )),
)


def _panel(panel: Panel, panel_id: int, x: int, y: int) -> dict[str, Any]:
    return {
        "id": panel_id,
        "type": panel.kind,
        "title": panel.title,
        "description": panel.description,
        "datasource": {"type": "prometheus", "uid": "${datasource}"},
        "gridPos": {"h": 8, "w": panel.width, "x": x, "y": y},
        "fieldConfig": {"defaults": {"unit": panel.unit}, "overrides": []},
        "options": {"legend": {"displayMode": "list", "placement": "bottom"}, "tooltip": {"mode": "multi"}},
        "targets": [
            {"refId": chr(ord("A") + i), "expr": expr, "legendFormat": legend}
            for i, (expr, legend) in enumerate(panel.exprs)
        ],
    }


def dashboard() -> dict[str, Any]:
    panels: list[dict[str, Any]] = []
    y = 0
    for row in ROWS:
        panels.append({"id": len(panels) + 1, "type": "row", "title": row.title, "collapsed": False,
                       "gridPos": {"h": 1, "w": FULL_WIDTH, "x": 0, "y": y}, "panels": []})
        y += 1
        x = 0
        for panel in row.panels:
            if x + panel.width > FULL_WIDTH:
                x, y = 0, y + 8
            panels.append(_panel(panel, len(panels) + 1, x, y))
            x += panel.width
        y += 8
    return {
        "uid": UID,
        "title": "convoscope pipeline",
        "description": "Golden signals of each stage: gateways, transcription, insights, analytics, store.",
        "tags": ["convoscope", "kafka"],
        "editable": True,
        "schemaVersion": 39,
        "time": {"from": "now-3h", "to": "now"},
        "refresh": "30s",
        "timezone": "",
        "templating": {"list": [
            {"name": "datasource", "label": "Prometheus", "type": "datasource", "query": "prometheus",
             "current": {}, "hide": 0},
            {"name": "namespace", "label": "Namespace", "type": "query",
             "datasource": {"type": "prometheus", "uid": "${datasource}"},
             "query": {"query": "label_values(convoscope_gateway_active_streams, namespace)", "refId": "namespace"},
             "definition": "label_values(convoscope_gateway_active_streams, namespace)",
             "refresh": 2, "current": {}, "hide": 0},
        ]},
        "annotations": {"list": []},
        "panels": panels,
    }
