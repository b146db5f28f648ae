"""Client for the chest X-ray service, for hospital integration scripts. Needs httpx only.

    from cxr_client import Client
    with Client("http://127.0.0.1:8000", api_key=None) as client:
        print(client.predict("xray.jpeg").label)
        for item in client.predict_many(paths, concurrency=4):
            print(item.path, item.prediction or item.error)
"""

from cxr_client.aio import AsyncClient
from cxr_client.client import Client
from cxr_client.errors import ServiceError, ServiceUnavailable
from cxr_client.results import ItemResult, Prediction
from cxr_client.retry import RetryPolicy

__all__ = ["AsyncClient", "Client", "ItemResult", "Prediction", "RetryPolicy", "ServiceError",
           "ServiceUnavailable"]
