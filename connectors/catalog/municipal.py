"""Municipal source systems delivered as files (registries, permits, utilities)."""

from __future__ import annotations

from connectors.catalog._helpers import col, csv, delimited, fixed, json_doc, jsonl, parquet, sqlite, xml
from connectors.spec import SourceSpec

MUNICIPAL = (
    SourceSpec(
        id="residence_permits", title="Residence permits (居住证)", domain="municipal", entity="person",
        format=csv("gb18030"), cadence="snapshot",
        columns=(
            col("证件编号", "key"), col("姓名", "name", "name:hanzi"), col("性别", "sex", "sex:zh"),
            col("出生日期", "dob", "date:cn"), col("身份证号", "id_number", "id:full"),
            col("手机号", "phone", "phone:plain"), col("居住地址", "address", "address:full"),
            col("签发日期", "fact:issue_date", "date:cn"), col("有效期至", "fact:valid_until", "date:cn"),
        ),
        fact_type="residence_permit",
        description="Permits for residents living outside their registered province.",
    ),
    SourceSpec(
        id="marriage_registry", title="Marriage registry (婚姻登记)", domain="municipal", entity="person",
        format=xml("登记"), cadence="snapshot",
        columns=(
            col("登记号", "key"), col("姓名", "name", "name:hanzi"), col("性别", "sex", "sex:zh"),
            col("出生日期", "dob", "date:iso"), col("证件号码", "id_number", "id:full"),
            col("登记日期", "fact:event_date", "date:iso"), col("登记机关", "fact:issuing_body"),
        ),
        fact_type="marriage_registration",
    ),
    SourceSpec(
        id="property_registry", title="Real-estate registry (不动产登记)", domain="municipal", entity="person",
        format=parquet(), cadence="snapshot",
        columns=(
            col("cert_no", "key"), col("owner_name", "name", "name:hanzi"),
            col("owner_id", "id_number", "id:full"), col("property_address", "address", "address:full"),
            col("area_sqm", "fact:area_sqm", "decimal"), col("registered_on", "fact:event_date", "date:epoch"),
        ),
        fact_type="property_ownership",
    ),
    SourceSpec(
        id="provident_fund", title="Housing provident fund accounts (住房公积金)", domain="municipal",
        entity="person", format=fixed((12, 10, 18, 30, 18, 10, 8)), cadence="snapshot",
        columns=(
            col("GJJZH", "key"), col("XM", "name", "name:hanzi"), col("ZJHM", "id_number", "id:full"),
            col("DWMC", "employer.name"), col("DWXYDM", "employer.uscc", "uscc"),
            col("YJCE", "fact:monthly_deposit", "decimal"), col("KHRQ", "fact:opened", "date:ymd"),
        ),
        fact_type="provident_fund_account",
    ),
    SourceSpec(
        id="tax_filings", title="Individual income tax filings (个税申报)", domain="municipal",
        entity="person", format=jsonl(), cadence="delta",
        columns=(
            col("filing_id", "key"), col("taxpayer.name", "name", "name:hanzi"),
            col("taxpayer.id_number", "id_number", "id:full"),
            col("taxpayer.phone", "phone", "phone:e164_spaced", required=False),
            col("withholder.name", "employer.name"), col("withholder.uscc", "employer.uscc", "uscc"),
            col("period", "fact:period"), col("tax_amount", "fact:amount", "decimal"),
            col("filed_on", "fact:event_date", "date:iso"),
        ),
        fact_type="tax_filing",
    ),
    SourceSpec(
        id="utility_bills", title="Water and power accounts (水电账户)", domain="municipal",
        entity="person", format=delimited("|"), cadence="delta",
        columns=(
            col("户号", "key"), col("户主", "name", "name:hanzi"), col("手机", "phone", "phone:masked"),
            col("用电地址", "address", "address:full"), col("用量", "fact:usage_kwh", "decimal"),
            col("账单日期", "fact:event_date", "date:ymd"),
        ),
        fact_type="utility_bill",
    ),
    SourceSpec(
        id="market_penalties", title="Market-regulation penalties (市场监管行政处罚)", domain="municipal",
        entity="business", format=csv(), cadence="delta",
        columns=(
            col("决定书文号", "key"), col("当事人名称", "name"), col("统一社会信用代码", "uscc", "uscc"),
            col("法定代表人", "legal_rep.name", "name:hanzi"), col("处罚金额", "fact:amount", "decimal"),
            col("处罚日期", "fact:event_date", "date:cn"), col("处罚事由", "fact:reason"),
        ),
        fact_type="administrative_penalty",
    ),
    SourceSpec(
        id="business_licences", title="Operating licences (经营许可)", domain="municipal",
        entity="business", format=json_doc("data", "licences"), cadence="snapshot",
        columns=(
            col("licence_no", "key"), col("company.name", "name"), col("company.uscc", "uscc", "uscc"),
            col("company.address", "address", "address:full"), col("company.industry", "industry"),
            col("licence_type", "fact:licence_type"), col("valid_until", "fact:valid_until", "date:iso"),
        ),
        fact_type="licence",
    ),
    SourceSpec(
        id="rental_registry", title="Housing rental registrations (房屋租赁登记)", domain="municipal",
        entity="person", format=sqlite("zuling"), cadence="snapshot",
        columns=(
            col("htbh", "key"), col("czr", "name", "name:hanzi"), col("zjhm", "id_number", "id:masked"),
            col("lxdh", "phone", "phone:plain"), col("qu", "district"), col("jd", "street"),
            col("qzrq", "fact:event_date", "date:iso"), col("yzj", "fact:monthly_rent", "decimal"),
        ),
        fact_type="rental",
    ),
    SourceSpec(
        id="employment_registry", title="Employment registrations (就业登记)", domain="municipal",
        entity="person", format=delimited("\t", "gb18030"), cadence="snapshot",
        columns=(
            col("登记编号", "key"), col("姓名", "name", "name:hanzi"), col("身份证号", "id_number", "id:full"),
            col("性别", "sex", "sex:12"), col("用人单位", "employer.name"),
            col("单位信用代码", "employer.uscc", "uscc"), col("入职日期", "fact:event_date", "date:dmy"),
        ),
        fact_type="employment",
    ),
)
