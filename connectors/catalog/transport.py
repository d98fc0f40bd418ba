"""Transport operators and authorities delivering files."""

from __future__ import annotations

from connectors.catalog._helpers import col, csv, delimited, fixed, json_doc, jsonl, parquet, sqlite, xml
from connectors.spec import SourceSpec

TRANSPORT = (
    SourceSpec(
        id="rail_tickets", title="Rail tickets (铁路客票)", domain="transport", entity="person",
        format=csv("gb18030"), cadence="delta",
        columns=(
            col("票号", "key"), col("乘车人", "name", "name:hanzi"), col("证件号码", "id_number", "id:full"),
            col("车次", "fact:train_no"), col("发站", "fact:from_station"), col("到站", "fact:to_station"),
            col("乘车日期", "fact:event_date", "date:iso"),
        ),
        fact_type="rail_trip",
    ),
    SourceSpec(
        id="air_bookings", title="Air bookings (民航订座)", domain="transport", entity="person",
        format=jsonl(), cadence="delta",
        columns=(
            col("pnr", "key"), col("passenger.name", "name", "name:pinyin_ticket"),
            col("passenger.id", "id_number", "id:full"), col("passenger.contact", "phone", "phone:e164_spaced"),
            col("flight", "fact:flight_no"), col("origin", "fact:from_airport"), col("dest", "fact:to_airport"),
            col("date", "fact:event_date", "date:iso"),
        ),
        fact_type="flight",
    ),
    SourceSpec(
        id="flight_ban_list", title="Flight ban list (限制乘坐民航)", domain="transport", entity="person",
        format=xml("限制对象"), cadence="snapshot",
        columns=(
            col("编号", "key"), col("姓名", "name", "name:hanzi"), col("身份证号", "id_number", "id:masked"),
            col("决定机关", "fact:issuing_body"), col("依据", "fact:legal_basis"),
            col("起始日期", "fact:start_date", "date:iso"), col("截止日期", "fact:expiry_date", "date:iso"),
        ),
        fact_type="list:flight_ban",
    ),
    SourceSpec(
        id="rail_ban_list", title="Rail ban list (限制乘坐火车)", domain="transport", entity="person",
        format=csv(), cadence="snapshot",
        columns=(
            col("ref", "key"), col("name", "name", "name:hanzi"), col("id_no", "id_number", "id:masked"),
            col("authority", "fact:issuing_body"), col("basis", "fact:legal_basis"),
            col("from", "fact:start_date", "date:dmy"), col("until", "fact:expiry_date", "date:dmy"),
        ),
        fact_type="list:rail_ban",
    ),
    SourceSpec(
        id="traffic_violations", title="Traffic violations (交通违法)", domain="transport", entity="person",
        format=parquet(), cadence="delta",
        columns=(
            col("wfbh", "key"), col("hphm", "plate", "plate"), col("dsr", "name", "name:hanzi"),
            col("jszh", "id_number", "id:full", required=False), col("wfdm", "fact:violation_code"),
            col("fkje", "fact:amount", "decimal"), col("jf", "fact:points", "int"),
            col("wfsj", "fact:event_date", "date:epoch"),
        ),
        fact_type="traffic_violation",
    ),
    SourceSpec(
        id="driving_licences", title="Driving licences (机动车驾驶证)", domain="transport", entity="person",
        format=fixed((12, 10, 18, 1, 8, 4, 8, 40)), cadence="snapshot",
        columns=(
            col("DABH", "key"), col("XM", "name", "name:hanzi"), col("SFZMHM", "id_number", "id:full"),
            col("XB", "sex", "sex:12"), col("CSRQ", "dob", "date:ymd"), col("ZJCX", "fact:licence_class"),
            col("CCLZRQ", "fact:event_date", "date:ymd"), col("ZZ", "address", "address:full"),
        ),
        fact_type="driving_licence",
    ),
    SourceSpec(
        id="metro_cards", title="Metro card accounts (地铁卡)", domain="transport", entity="person",
        format=delimited(";"), cadence="delta",
        columns=(
            col("card_no", "key"), col("holder", "name", "name:pinyin_western"),
            col("phone", "phone", "phone:masked"), col("topup", "fact:amount", "decimal"),
            col("date", "fact:event_date", "date:dmy"),
        ),
        fact_type="metro_topup",
        description="Romanised names (given name first) and masked phones only.",
    ),
    SourceSpec(
        id="highway_tolls", title="Highway tolls (高速通行费)", domain="transport", entity="person",
        format=sqlite("tongxing"), cadence="delta",
        columns=(
            col("lsh", "key"), col("cph", "plate", "plate"), col("czxm", "name", "name:hanzi"),
            col("sjh", "phone", "phone:plain", required=False), col("sfz", "fact:toll_station"),
            col("je", "fact:amount", "decimal"), col("rq", "fact:event_date", "date:iso"),
        ),
        fact_type="toll",
    ),
    SourceSpec(
        id="coach_tickets", title="Long-distance coach tickets (长途客运)", domain="transport",
        entity="person", format=json_doc("tickets"), cadence="delta",
        columns=(
            col("ticket", "key"), col("passenger.name", "name", "name:hanzi"),
            col("passenger.id", "id_number", "id:masked"), col("passenger.mobile", "phone", "phone:plain"),
            col("from", "fact:from_station"), col("to", "fact:to_station"),
            col("date", "fact:event_date", "date:cn"),
        ),
        fact_type="coach_trip",
    ),
    SourceSpec(
        id="etc_accounts", title="ETC toll accounts (ETC 账户)", domain="transport", entity="person",
        format=csv("gb18030"), cadence="snapshot",
        columns=(
            col("账户号", "key"), col("车牌号", "plate", "plate"), col("开户人", "name", "name:hanzi"),
            col("证件号", "id_number", "id:full"), col("手机号", "phone", "phone:dashed"),
            col("开户日期", "fact:event_date", "date:ymd"),
        ),
        fact_type="etc_account",
    ),
)
