import os
import sentry_sdk
sentry_sdk.init(dsn=os.environ["SENTRY_DSN"], release=os.environ["SENTRY_RELEASE"],
                include_local_variables=True, default_integrations=True)

# A payments API: refund amounts must be strictly positive decimals. Clients that send
# a zero or negative amount must get a 422 with validation details back.
from decimal import Decimal
from typing import List

from fastapi import FastAPI
from pydantic import BaseModel, condecimal
from starlette.testclient import TestClient


class RefundLine(BaseModel):
    invoice_id: str
    amount: condecimal(gt=Decimal("0"), max_digits=10, decimal_places=2)
    reason: str = "customer_request"


app = FastAPI(title="payments")


@app.post("/refunds/")
def create_refunds(lines: List[RefundLine]):
    return {"accepted": len(lines)}


client = TestClient(app)


def submit_refunds(lines):
    """Post a batch of refund lines the way the back-office client does."""
    response = client.post("/refunds/", json=lines)
    print(response.status_code, response.json())
    assert response.status_code == 422
    return response.json()


# Refund batches from different back-office users, each with an amount that is not > 0.
batches = [
    [{"invoice_id": "INV-2024-00017", "amount": "-12.50", "reason": "duplicate charge"}],
    [{"invoice_id": "INV-2024-00342", "amount": "0.00", "reason": "goodwill"}],
    [{"invoice_id": "INV-2023-09981", "amount": "89.90"},
     {"invoice_id": "INV-2023-09982", "amount": "-89.90", "reason": "reversal of refund"}],
    [{"invoice_id": "INV-2024-01200", "amount": "-1500", "reason": "chargeback"},
     {"invoice_id": "INV-2024-01201", "amount": "-0.01", "reason": "rounding"},
     {"invoice_id": "INV-2024-01202", "amount": "15.00"}],
]
last_error = None
for lines in batches:
    try:
        submit_refunds(lines)
    except Exception as exc:
        sentry_sdk.capture_exception()
        last_error = exc
sentry_sdk.flush()
if last_error is not None:
    raise last_error
