import os
import sentry_sdk
sentry_sdk.init(dsn=os.environ["SENTRY_DSN"], release=os.environ["SENTRY_RELEASE"],
                include_local_variables=True, default_integrations=True)

# A shop gateway mounting one FastAPI app per service. Each service accepts one of
# several payload shapes as its request body; the docs portal fetches every service's
# /openapi.json, which must render.
from typing import Union

from fastapi import FastAPI
from pydantic import BaseModel
from starlette.testclient import TestClient


class CardPayment(BaseModel):
    card_token: str
    amount_cents: int
    currency: str = "EUR"


class BankTransfer(BaseModel):
    iban: str
    amount_cents: int
    reference: str = None


class HomeDelivery(BaseModel):
    street: str
    postcode: str
    city: str
    floor: int = None


class PickupPoint(BaseModel):
    pickup_point_id: str
    carrier: str = "dhl"


class EmailChannel(BaseModel):
    email: str


class SmsChannel(BaseModel):
    phone_number: str
    country_code: str = "+49"


class PushChannel(BaseModel):
    device_token: str
    platform: str


checkout = FastAPI(title="checkout", version="2.3.1")


@checkout.post("/payments/")
def create_payment(payment: Union[CardPayment, BankTransfer]):
    return {"received": payment}


shipping = FastAPI(title="shipping", version="1.0.4")


@shipping.put("/orders/{order_id}/destination")
def set_destination(order_id: str, destination: Union[HomeDelivery, PickupPoint]):
    return {"order_id": order_id, "destination": destination}


notifications = FastAPI(title="notifications", version="0.9.0")


@notifications.post("/subscriptions/")
def subscribe(channel: Union[EmailChannel, SmsChannel, PushChannel]):
    return {"subscribed": channel}


gateway = FastAPI(title="shop-gateway")
gateway.mount("/checkout", checkout)
gateway.mount("/shipping", shipping)
gateway.mount("/notifications", notifications)

client = TestClient(gateway)


def fetch_schema(schema_url):
    """What the docs portal does for each service: fetch and list its OpenAPI paths."""
    response = client.get(schema_url)
    print(schema_url, response.status_code, sorted(response.json()["paths"]))
    return response.json()


last_error = None
for schema_url in ["/checkout/openapi.json", "/shipping/openapi.json", "/notifications/openapi.json"]:
    try:
        fetch_schema(schema_url)
    except Exception as exc:
        sentry_sdk.capture_exception()
        last_error = exc
sentry_sdk.flush()
if last_error is not None:
    raise last_error
