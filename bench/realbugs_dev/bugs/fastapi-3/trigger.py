import os
import sentry_sdk
sentry_sdk.init(dsn=os.environ["SENTRY_DSN"], release=os.environ["SENTRY_RELEASE"],
                include_local_variables=True, default_integrations=True)

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
    "A-10293": Order(orderId="A-10293", customerEmail="jane.doe@example.com",
                     total=59.9, sku_list=["SKU-881", "SKU-112"]),
}

app = FastAPI(title="orders")


@app.get("/orders/{order_id}", response_model=Order)
def read_order(order_id: str):
    return ORDERS[order_id]


client = TestClient(app)
response = client.get("/orders/A-10293")
print(response.status_code, response.json())
assert response.json()["orderId"] == "A-10293"
