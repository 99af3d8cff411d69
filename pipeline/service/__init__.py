"""The service runtime that the edge node and the cloud worker share.

Both are long-lived MQTT services with the same skeleton, written once here:

- :class:`BrokerLink`: connect with jittered, capped backoff (the first connection
  within ``broker.connect_timeout_s``, so a wrong address is a clear
  :class:`~pipeline.errors.TransportError`; after that, forever), a last will, one
  session per connection, reconnect when the connection is lost. aiomqtt's errors are
  translated here, at the one boundary, into :class:`~pipeline.errors.TransportError`.
- :class:`RetainedStatus`: a retained status message, its last-will twin saying
  offline, and the loop that republishes it every interval.
- :class:`MetricsEndpoint`: the Prometheus ``/metrics`` HTTP endpoint, stopped and
  joined on close.

Signals (first SIGINT/SIGTERM drains, the second aborts) are the command line's
(:func:`camoffload.lifecycle.run_with_signals`); what draining means is each service's
own (the edge lets frames in flight reach their decisions; the worker finishes its
queue).
"""

from pipeline.service.link import BrokerLink
from pipeline.service.metrics_http import MetricsEndpoint
from pipeline.service.publish import publish
from pipeline.service.status import RetainedStatus

__all__ = ["BrokerLink", "MetricsEndpoint", "RetainedStatus", "publish"]
