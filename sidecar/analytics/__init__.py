"""Per-request cache events from the plugins, published on a Kafka topic (analytics).

* `sidecar.analytics.event`: the event v1 -- checks of a plugin's ``AccessEvent`` and the
  JSON written to the topic (pure);
* `sidecar.analytics.service`: `Analytics`, what ``ReportAccess`` does (check, stamp, queue;
  `OFF` when analytics is not configured);
* `sidecar.analytics.producer`: the bounded, lossy Kafka producer of the analytics topic;
* `sidecar.analytics.kafka`: starting it for a configured sidecar (imports the Kafka
  client; not imported here);
* `sidecar.analytics.metrics`: the ``strata_analytics_*`` metrics.
"""
