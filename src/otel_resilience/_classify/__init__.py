"""Classification: any exception from an external call -> an :class:`ExternalServiceError`.

Dependencies point one way, each layer importing only those listed before it::

    _base                the Classification verdict, guarded reads, rule tables
    _http, _rpc, _rules  shared HTTP and gRPC evidence; the built-in rules for any exception
    _httpx, _requests, _urllib3, _aiohttp, _grpc, _botocore, _openai, _google, _redis
                         one module per client library; none imports another
    _libraries           the client-library table
    _registry            the chain and the Classifiers registry
    _mapper              map_external_error: the ReliabilityError a call raises

Nothing here imports the call path, breakers or telemetry.
"""

from ._base import Classification as Classification
from ._base import Classifier as Classifier
from ._base import safe_str as safe_str
from ._http import parse_retry_after as parse_retry_after
from ._http import status_to_error_type as status_to_error_type
from ._libraries import CLIENT_CLASSIFIERS as CLIENT_CLASSIFIERS
from ._libraries import classifier_for as classifier_for
from ._mapper import map_external_error as map_external_error
from ._mapper import redact_detail as redact_detail
from ._mapper import well_formed as well_formed
from ._registry import Classifiers as Classifiers
from ._registry import classify as classify
