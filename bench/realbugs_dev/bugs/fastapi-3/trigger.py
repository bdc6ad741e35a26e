import os
import sentry_sdk
from sentry_sdk.integrations.starlette import StarletteIntegration
# The TestClient re-raises a server error to the caller, which reports it; sentry's
# Starlette integration would report the same crash a second time from inside the app.
sentry_sdk.init(dsn=os.environ["SENTRY_DSN"], release=os.environ["SENTRY_RELEASE"],
                include_local_variables=True, default_integrations=True,
                disabled_integrations=[StarletteIntegration()])

# An order service whose public schema uses camelCase aliases; the handler returns
# the model instance itself and declares it as the response_model.
from typing import List, Optional

from fastapi import FastAPI
from pydantic import BaseModel, Field
from starlette.testclient import TestClient


class Order(BaseModel):
    order_id: str = Field(..., alias="orderId")
    customer_email: str = Field(..., alias="customerEmail")
    total: float = 0.0
    sku_list: Optional[List[str]] = None


ORDERS = {
    "A-10293": Order(
        orderId="A-10293", customerEmail="jane.doe@example.com", total=59.9, sku_list=["SKU-881", "SKU-112"]
    ),
    "B-20511": Order(
        orderId="B-20511",
        customerEmail="m.rossi@example.it",
        total=1249.0,
        sku_list=["SKU-907", "SKU-908", "SKU-910", "SKU-311", "SKU-002"],
    ),
    "C-00007": Order(orderId="C-00007", customerEmail="ops+test@example.org"),
    "D-31415": Order(orderId="D-31415", customerEmail="li.wei@example.cn", total=0.99, sku_list=[]),
}

app = FastAPI(title="orders")


@app.get("/orders/{order_id}", response_model=Order)
def read_order(order_id: str):
    return ORDERS[order_id]


client = TestClient(app)


def fetch_order(order_id):
    """What the storefront does to show an order: GET it and check the public schema."""
    response = client.get("/orders/%s" % order_id)
    print(response.status_code, response.json())
    assert response.json()["orderId"] == order_id
    return response.json()


last_error = None
for order_id in ["A-10293", "B-20511", "C-00007", "D-31415"]:
    try:
        fetch_order(order_id)
    except Exception as exc:
        sentry_sdk.capture_exception()
        last_error = exc
sentry_sdk.flush()
if last_error is not None:
    raise last_error
