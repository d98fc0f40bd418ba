"""Commercial platforms delivering files: shops, payments, lending, travel, insurance."""

from __future__ import annotations

from connectors.catalog._helpers import col, csv, delimited, fixed, json_doc, jsonl, parquet, sqlite, xml
from connectors.spec import SourceSpec

COMMERCIAL = (
    SourceSpec(
        id="ecommerce_orders", title="E-commerce orders (电商订单)", domain="commercial", entity="person",
        format=jsonl(), cadence="delta",
        columns=(
            col("order_id", "key"), col("receiver.name", "name", "name:hanzi"),
            col("receiver.phone", "phone", "phone:masked"), col("receiver.address", "address", "address:full"),
            col("amount", "fact:amount", "decimal"), col("category", "fact:category"),
            col("created_ms", "fact:event_date", "date:epoch_ms"),
        ),
        fact_type="order",
    ),
    SourceSpec(
        id="mobile_payments", title="Mobile payments (移动支付)", domain="commercial", entity="person",
        format=parquet(), cadence="delta",
        columns=(
            col("txn_id", "key"), col("real_name", "name", "name:hanzi"), col("cert_no", "id_number", "id:masked"),
            col("mobile", "phone", "phone:plain"), col("amount", "fact:amount", "decimal"),
            col("merchant", "fact:merchant"), col("ts", "fact:event_date", "date:epoch"),
        ),
        fact_type="payment",
    ),
    SourceSpec(
        id="consumer_loans", title="Consumer loans (消费贷款)", domain="commercial", entity="person",
        format=csv(), cadence="delta",
        columns=(
            col("loan_no", "key"), col("borrower_name", "name", "name:hanzi"),
            col("borrower_id", "id_number", "id:full"), col("borrower_phone", "phone", "phone:e164_spaced"),
            col("employer", "employer.name", required=False), col("principal", "fact:amount", "decimal"),
            col("term_months", "fact:term_months", "int"), col("issued", "fact:event_date", "date:iso"),
        ),
        fact_type="loan",
    ),
    SourceSpec(
        id="hotel_stays", title="Hotel guest registrations (旅馆业登记)", domain="commercial", entity="person",
        format=delimited("\t", "gb18030"), cadence="delta",
        columns=(
            col("登记号", "key"), col("姓名", "name", "name:hanzi"), col("性别", "sex", "sex:zh"),
            col("证件号码", "id_number", "id:full"), col("旅馆名称", "fact:hotel"),
            col("入住日期", "fact:event_date", "date:cn"), col("离店日期", "fact:check_out", "date:cn"),
        ),
        fact_type="stay",
    ),
    SourceSpec(
        id="bike_sharing", title="Bike-sharing rides (共享单车)", domain="commercial", entity="person",
        format=csv(), cadence="delta",
        columns=(
            col("ride_id", "key"), col("user_name", "name", "name:hanzi"), col("mobile", "phone", "phone:plain"),
            col("city", "address", "address:city"), col("minutes", "fact:minutes", "int"),
            col("ride_date", "fact:event_date", "date:dmy"),
        ),
        fact_type="bike_ride",
    ),
    SourceSpec(
        id="car_rental", title="Car rentals (汽车租赁)", domain="commercial", entity="person",
        format=xml("rental"), cadence="delta",
        columns=(
            col("contract", "key"), col("driver_name", "name", "name:pinyin_upper"),
            col("driver_id", "id_number", "id:full"), col("phone", "phone", "phone:e164_spaced"),
            col("pickup_city", "fact:pickup", ), col("days", "fact:rental_days", "int"),
            col("start", "fact:event_date", "date:dmy"),
        ),
        fact_type="car_rental",
    ),
    SourceSpec(
        id="food_delivery", title="Food delivery orders (外卖订单)", domain="commercial", entity="person",
        format=json_doc("orders"), cadence="delta",
        columns=(
            col("order_no", "key"), col("customer.name", "name", "name:hanzi"),
            col("customer.phone", "phone", "phone:masked"), col("customer.address", "address", "address:full"),
            col("total", "fact:amount", "decimal"), col("restaurant", "fact:merchant"),
            col("date", "fact:event_date", "date:iso"),
        ),
        fact_type="food_order",
    ),
    SourceSpec(
        id="insurance_policies", title="Insurance policies (保险保单)", domain="commercial", entity="person",
        format=fixed((20, 10, 18, 2, 8, 11, 12, 8)), cadence="snapshot",
        columns=(
            col("BDH", "key"), col("TBRXM", "name", "name:hanzi"), col("TBRZJHM", "id_number", "id:full"),
            col("XB", "sex", "sex:12"), col("CSRQ", "dob", "date:ymd"), col("SJHM", "phone", "phone:plain"),
            col("BF", "fact:premium", "decimal"), col("QBRQ", "fact:event_date", "date:ymd"),
        ),
        fact_type="insurance_policy",
    ),
    SourceSpec(
        id="travel_agency", title="Online travel agency bookings (在线旅行)", domain="commercial",
        entity="person", format=jsonl(), cadence="delta",
        columns=(
            col("booking_ref", "key"), col("traveller.name", "name", "name:pinyin_ticket"),
            col("traveller.passport", "passport", "passport"), col("traveller.birth_date", "dob", "date:iso"),
            col("traveller.gender", "sex", "sex:mf"), col("traveller.email", "email", "email", required=False),
            col("destination", "fact:destination"), col("departure", "fact:event_date", "date:iso"),
        ),
        fact_type="trip_booking",
    ),
    SourceSpec(
        id="loyalty_members", title="Retail loyalty members (会员)", domain="commercial", entity="person",
        format=sqlite("members"), cadence="snapshot",
        columns=(
            col("member_id", "key"), col("name", "name", "name:hanzi"), col("mobile", "phone", "phone:plain"),
            col("gender", "sex", "sex:mf", required=False), col("birthday", "dob", "date:dmy", required=False),
            col("email", "email", "email", required=False), col("joined", "fact:event_date", "date:iso"),
        ),
        fact_type="membership",
    ),
)
