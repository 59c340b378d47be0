"""The Web Connectivity test helper: OONI's control protocol, its client and `curfew helper`.

`protocol` is the wire format (THRequest/THResponse), `control` turns an answer into the
control's Measurement and a measurement into an answer; the client and server build on both.
"""

from probe.helper.control import control_measurement, th_response
from probe.helper.protocol import ProtocolError, THRequest, THResponse

__all__ = ["ProtocolError", "THRequest", "THResponse", "control_measurement", "th_response"]
