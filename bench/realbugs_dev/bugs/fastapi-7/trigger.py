import os
import sentry_sdk
sentry_sdk.init(dsn=os.environ["SENTRY_DSN"], release=os.environ["SENTRY_RELEASE"],
                include_local_variables=True, default_integrations=True)

# A payments API: refund amounts must be strictly positive decimals. A client sends
# a negative amount, which must come back as a 422 with validation details.
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
response = client.post(
    "/refunds/",
    json=[{"invoice_id": "INV-2024-00017", "amount": "-12.50", "reason": "duplicate charge"}],
)
print(response.status_code, response.json())
assert response.status_code == 422
