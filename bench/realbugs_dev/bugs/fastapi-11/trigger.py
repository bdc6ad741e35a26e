import os
import sentry_sdk
sentry_sdk.init(dsn=os.environ["SENTRY_DSN"], release=os.environ["SENTRY_RELEASE"],
                include_local_variables=True, default_integrations=True)

# A checkout API accepting either of two payment payloads as the request body.
# The interactive docs page fetches /openapi.json, which must render.
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


app = FastAPI(title="checkout", version="2.3.1")


@app.post("/payments/")
def create_payment(payment: Union[CardPayment, BankTransfer]):
    return {"received": payment}


client = TestClient(app)
response = client.get("/openapi.json")
print(response.status_code, sorted(response.json()["paths"]))
