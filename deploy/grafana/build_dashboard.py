# ruff: noqa: E501  (PromQL reads best on one line)
"""Builds gateway-dashboard.json (run: python deploy/grafana/build_dashboard.py). Edit the panels here,
regenerate, commit both; a test checks the JSON is this script's output and that every query returns
data against a real Prometheus scraping a loaded gateway."""

import json
from pathlib import Path

OUT = Path(__file__).with_name("gateway-dashboard.json")
SEL = 'job=~"$job"'
SELA = 'job=~"$job",alias=~"$alias"'
R = "[$__rate_interval]"
panels = []
y = 0
pid = 0

def row(title):
    global y, pid
    pid += 1
    panels.append({"type": "row", "title": title, "id": pid, "collapsed": False,
                   "gridPos": {"h": 1, "w": 24, "x": 0, "y": y}, "panels": []})
    y += 1

x = 0
def panel(title, targets, unit="short", kind="timeseries", w=8, h=8, desc="", extra=None):
    global x, y, pid
    pid += 1
    if x + w > 24:
        x = 0
        y += h
    p = {"type": kind, "title": title, "id": pid, "description": desc,
         "datasource": {"type": "prometheus", "uid": "${datasource}"},
         "gridPos": {"h": h, "w": w, "x": x, "y": y},
         "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
         "options": {"legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
                     "tooltip": {"mode": "multi", "sort": "desc"}} if kind == "timeseries" else {},
         "targets": [{"refId": chr(65 + i), "datasource": {"type": "prometheus", "uid": "${datasource}"},
                      "expr": expr, "legendFormat": legend, "range": True, "instant": False}
                     for i, (expr, legend) in enumerate(targets)]}
    if extra:
        p.update(extra)
    panels.append(p)
    x += w
    if x >= 24:
        x = 0
        y += h

def endrow():
    global x, y
    if x:
        x = 0
        y += 8

def q(quant, metric, by, sel=SELA):
    return f'histogram_quantile({quant}, sum by ({by + ", " if by else ""}le) (rate({metric}_bucket{{{sel}}}{R})))'

row("Traffic")
panel("Requests / s by alias", [(f'sum by (alias) (rate(gateway_requests_total{{{SELA}}}{R}))', "{{alias}}")], "reqps")
panel("Requests / s by status class", [(f'sum by (status_class) (rate(gateway_requests_total{{{SELA}}}{R}))', "{{status_class}}")], "reqps")
panel("In flight", [(f'sum(gateway_in_flight_requests{{{SEL}}})', "requests"),
                    (f'sum by (deployment) (gateway_deployment_in_flight{{{SEL}}})', "{{deployment}}")], "short")
endrow()
row("Errors")
panel("5xx ratio by alias", [(f'sum by (alias) (rate(gateway_requests_total{{{SELA},status_class="5xx"}}{R})) / sum by (alias) (rate(gateway_requests_total{{{SELA}}}{R}))', "{{alias}}")], "percentunit")
panel("4xx / s by alias (\"\" = refused before routing)", [(f'sum by (alias) (rate(gateway_requests_total{{{SELA},status_class="4xx"}}{R}))', "{{alias}}")], "reqps")
panel("Upstream errors / s by deployment", [(f'sum by (deployment, error) (rate(gateway_upstream_errors_total{{{SEL}}}{R}))', "{{deployment}} {{error}}")], "reqps")
endrow()
row("Latency")
panel("Request latency (non-streamed)", [(q(p, "gateway_request_duration_seconds", "", SELA + ',stream="false"'), f"p{int(p*100)}") for p in (0.5, 0.95, 0.99)], "s")
panel("Time to first token", [(q(p, "gateway_time_to_first_token_seconds", ""), f"p{int(p*100)}") for p in (0.5, 0.95, 0.99)], "s")
panel("Gateway overhead", [(q(p, "gateway_overhead_seconds", ""), f"p{int(p*100)}") for p in (0.5, 0.99)], "s",
      desc="Time spent in the gateway itself, upstream waits excluded")
panel("p95 request latency by alias", [(q(0.95, "gateway_request_duration_seconds", "alias"), "{{alias}}")], "s")
panel("p95 upstream latency by deployment", [(q(0.95, "gateway_upstream_duration_seconds", "deployment"), "{{deployment}}")], "s")
panel("Inter-token latency (streams)", [(q(p, "gateway_inter_token_latency_seconds", "alias"), f"p{int(p*100)} {{{{alias}}}}") for p in (0.5, 0.95)], "s")
endrow()
row("Tokens and cost")
panel("Tokens / s by alias", [(f'sum by (alias, direction) (rate(gateway_tokens_total{{{SELA}}}{R}))', "{{alias}} {{direction}}")], "short")
panel("Tokens / s by team", [(f'sum by (team, direction) (rate(gateway_team_tokens_total{{{SEL}}}{R}))', "{{team}} {{direction}}")], "short")
panel("Budget used", [(f'max by (scope, name, period) (gateway_budget_used_ratio{{{SEL}}})', "{{scope}} {{name}} ({{period}})")], "percentunit", kind="bargauge",
      extra={"options": {"orientation": "horizontal", "displayMode": "gradient",
                         "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False}},
             "fieldConfig": {"defaults": {"unit": "percentunit", "min": 0, "max": 1,
                                          "thresholds": {"mode": "absolute", "steps": [
                                              {"color": "green", "value": None}, {"color": "orange", "value": 0.75},
                                              {"color": "red", "value": 0.9}]}}, "overrides": []}})
panel("Cost USD / hour by alias", [(f'sum by (alias) (rate(gateway_cost_usd_total{{{SELA}}}{R})) * 3600', "{{alias}}")], "currencyUSD")
panel("Cost USD / hour by team", [(f'sum by (team) (rate(gateway_team_cost_usd_total{{{SEL}}}{R})) * 3600', "{{team}}")], "currencyUSD")
panel("Cost USD in range by team", [(f'sum by (team) (increase(gateway_team_cost_usd_total{{{SEL}}}[$__range]))', "{{team}}")], "currencyUSD", kind="bargauge",
      extra={"options": {"orientation": "horizontal", "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False}}})
endrow()
row("Cache and limits")
panel("Cache hit ratio", [(f'sum by (alias) (rate(gateway_cache_lookups_total{{{SELA},result="hit"}}{R})) / sum by (alias) (rate(gateway_cache_lookups_total{{{SELA},result=~"hit|miss"}}{R}))', "{{alias}}")], "percentunit")
panel("Cache lookups / s by result", [(f'sum by (result) (rate(gateway_cache_lookups_total{{{SELA}}}{R}))', "{{result}}")], "reqps")
panel("Rate-limit and budget rejections / s", [(f'sum by (scope, limit) (rate(gateway_ratelimit_rejections_total{{{SEL}}}{R}))', "{{scope}} {{limit}}"),
                                               (f'sum by (scope) (rate(gateway_budget_rejections_total{{{SEL}}}{R}))', "budget {{scope}}")], "reqps")
endrow()
row("Routing and deployment health")
panel("Fallbacks / s", [(f'sum by (alias, to_alias, reason) (rate(gateway_routing_fallbacks_total{{{SELA}}}{R}))', "{{alias}} → {{to_alias}} ({{reason}})")], "reqps")
panel("Retries / s", [(f'sum by (alias) (rate(gateway_routing_retries_total{{{SELA}}}{R}))', "{{alias}}")], "reqps")
panel("Circuit state (0 closed, 1 half-open, 2 open)", [(f'max by (deployment) (gateway_routing_circuit_state{{{SEL}}})', "{{deployment}}")], "short",
      extra={"fieldConfig": {"defaults": {"unit": "short", "min": 0, "max": 2, "thresholds": {"mode": "absolute", "steps": [
          {"color": "green", "value": None}, {"color": "orange", "value": 1}, {"color": "red", "value": 2}]}}, "overrides": []}})
panel("Aliases with every deployment open", [(f'min by (alias) (max by (deployment) (gateway_routing_circuit_state{{{SEL}}}) * on (deployment) group_right max by (alias, deployment) (gateway_deployment_info{{{SELA}}} == 1))', "{{alias}}")], "short",
      desc="2: every deployment of the alias is cooling down")
endrow()
row("Operations")
panel("Store up (min over replicas)", [(f'min(gateway_store_up{{{SEL}}})', "store up")], "short", kind="stat", w=4,
      extra={"options": {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False}, "colorMode": "background"},
             "fieldConfig": {"defaults": {"unit": "short", "mappings": [{"type": "value", "options": {"0": {"text": "DOWN", "color": "red"}, "1": {"text": "UP", "color": "green"}}}]}, "overrides": []}})
panel("Store latency p99 by operation", [(q(0.99, "gateway_store_duration_seconds", "operation", SEL), "{{operation}}"),
                                          (f'sum by (operation) (rate(gateway_store_errors_total{{{SEL}}}{R}))', "errors/s {{operation}}")], "s", w=8)
panel("Loaded config (replicas per hash)", [(f'count by (hash) (gateway_config_info{{{SEL}}} == 1)', "{{hash}}")], "short", w=6)
panel("Config reloads in range", [(f'sum by (result) (increase(gateway_config_reloads_total{{{SEL}}}[$__range]))', "{{result}}")], "short", kind="stat", w=6,
      extra={"options": {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False}}})
endrow()

dash = {
    "title": "LLM Gateway", "uid": "llm-gateway", "editable": True, "schemaVersion": 39, "version": 1,
    "tags": ["llm-gateway"], "timezone": "browser", "refresh": "30s", "graphTooltip": 1,
    "time": {"from": "now-3h", "to": "now"},
    "annotations": {"list": []},
    "templating": {"list": [
        {"name": "datasource", "label": "Prometheus", "type": "datasource", "query": "prometheus",
         "current": {}, "hide": 0, "refresh": 1, "options": []},
        {"name": "job", "label": "Job", "type": "query", "datasource": {"type": "prometheus", "uid": "${datasource}"},
         "query": {"query": "label_values(gateway_requests_total, job)", "refId": "job"},
         "definition": "label_values(gateway_requests_total, job)", "includeAll": True, "multi": True,
         "allValue": ".*", "current": {"text": "All", "value": "$__all"}, "refresh": 2, "sort": 1, "options": []},
        {"name": "alias", "label": "Alias", "type": "query", "datasource": {"type": "prometheus", "uid": "${datasource}"},
         "query": {"query": "label_values(gateway_requests_total{job=~\"$job\"}, alias)", "refId": "alias"},
         "definition": "label_values(gateway_requests_total{job=~\"$job\"}, alias)", "includeAll": True, "multi": True,
         "allValue": ".*", "current": {"text": "All", "value": "$__all"}, "refresh": 2, "sort": 1, "options": []},
    ]},
    "panels": panels,
}


def render() -> str:
    return json.dumps(dash, indent=2, ensure_ascii=False) + "\n"


if __name__ == "__main__":
    OUT.write_text(render(), encoding="utf-8")
    print(len([p for p in panels if p["type"] != "row"]), "panels", sum(len(p.get("targets", [])) for p in panels),
          "queries ->", OUT)
