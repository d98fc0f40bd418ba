"""Court and legal-services source systems delivered as files."""

from __future__ import annotations

from connectors.catalog._helpers import col, csv, delimited, fixed, json_doc, jsonl, parquet, sqlite, xml
from connectors.spec import SourceSpec


COURT = (
    SourceSpec(
        id="civil_judgments", title="Civil judgments (民事判决书)", domain="court", entity="person",
        format=xml("文书"), cadence="delta",
        columns=(
            col("文书ID", "key"), col("当事人", "name", "name:hanzi"), col("性别", "sex", "sex:zh", required=False),
            col("出生日期", "dob", "date:cn", required=False), col("住址", "address", "address:full", required=False),
            col("案号", "fact:case_no"), col("法院", "fact:court"), col("案由", "fact:cause"),
            col("标的额", "fact:amount", "decimal"), col("裁判日期", "fact:event_date", "date:cn"),
        ),
        fact_type="civil_judgment",
    ),
    SourceSpec(
        id="judgment_defaulters", title="Judgment defaulters list (失信被执行人)", domain="court",
        entity="person", format=csv("gb18030"), cadence="snapshot",
        columns=(
            col("公示编号", "key"), col("被执行人姓名", "name", "name:hanzi"),
            col("身份证号码", "id_number", "id:masked"), col("性别", "sex", "sex:zh"),
            col("执行法院", "fact:issuing_body"), col("执行依据文号", "fact:case_no"),
            col("失信情形依据", "fact:legal_basis"), col("发布时间", "fact:start_date", "date:cn"),
            col("屏蔽时间", "fact:expiry_date", "date:cn"),
        ),
        fact_type="list:defaulter",
    ),
    SourceSpec(
        id="consumption_restrictions", title="Consumption restriction orders (限制消费令)", domain="court",
        entity="person", format=jsonl(), cadence="snapshot",
        columns=(
            col("order_id", "key"), col("subject.name", "name", "name:hanzi"),
            col("subject.id", "id_number", "id:masked"), col("court", "fact:issuing_body"),
            col("case_no", "fact:case_no"), col("basis", "fact:legal_basis"),
            col("effective", "fact:start_date", "date:iso"), col("lifted", "fact:expiry_date", "date:iso"),
        ),
        fact_type="list:consumption_restriction",
    ),
    SourceSpec(
        id="hearing_notices", title="Hearing notices (开庭公告)", domain="court", entity="person",
        format=delimited("|"), cadence="delta",
        columns=(
            col("公告编号", "key"), col("当事人", "name", "name:hanzi"), col("案号", "fact:case_no"),
            col("法院", "fact:court"), col("案由", "fact:cause"), col("开庭日期", "fact:event_date", "date:iso"),
        ),
        fact_type="hearing",
        description="Names only: no ID, birth date or phone. The hardest mentions to link.",
    ),
    SourceSpec(
        id="bankruptcy_cases", title="Bankruptcy cases (破产案件)", domain="court", entity="business",
        format=xml("案件"), cadence="delta",
        columns=(
            col("案件编号", "key"), col("债务人名称", "name"), col("统一社会信用代码", "uscc", "uscc"),
            col("法定代表人", "legal_rep.name", "name:hanzi", required=False), col("案号", "fact:case_no"),
            col("受理法院", "fact:court"), col("受理日期", "fact:event_date", "date:iso"),
        ),
        fact_type="bankruptcy",
    ),
    SourceSpec(
        id="labour_arbitration", title="Labour arbitration awards (劳动仲裁)", domain="court",
        entity="person", format=parquet(), cadence="delta",
        columns=(
            col("award_id", "key"), col("applicant", "name", "name:hanzi"),
            col("applicant_id", "id_number", "id:full"), col("applicant_phone", "phone", "phone:masked"),
            col("respondent", "employer.name"), col("respondent_uscc", "employer.uscc", "uscc"),
            col("award_amount", "fact:amount", "decimal"), col("award_date", "fact:event_date", "date:epoch"),
        ),
        fact_type="arbitration_award",
    ),
    SourceSpec(
        id="mediation_records", title="People's mediation records (人民调解)", domain="court",
        entity="person", format=csv(), cadence="delta",
        columns=(
            col("调解编号", "key"), col("姓名", "name", "name:hanzi"),
            col("联系电话", "phone", "phone:dashed", required=False), col("所在地", "address", "address:city"),
            col("纠纷类型", "fact:dispute_type"), col("调解日期", "fact:event_date", "date:dmy"),
        ),
        fact_type="mediation",
    ),
    SourceSpec(
        id="notary_records", title="Notarial acts (公证)", domain="court", entity="person",
        format=sqlite("gongzheng"), cadence="delta",
        columns=(
            col("gzbh", "key"), col("sqr_xm", "name", "name:hanzi"), col("sqr_zjhm", "id_number", "id:full"),
            col("sqr_xb", "sex", "sex:mf"), col("sqr_csrq", "dob", "date:iso"),
            col("gzsx", "fact:matter"), col("gzrq", "fact:event_date", "date:iso"),
        ),
        fact_type="notarial_act",
    ),
    SourceSpec(
        id="court_fees", title="Court fee payments (诉讼费缴纳)", domain="court", entity="person",
        format=fixed((16, 10, 18, 12, 8, 24), encoding="utf-8"), cadence="delta",
        columns=(
            col("JFBH", "key"), col("JFR", "name", "name:hanzi"), col("ZJHM", "id_number", "id:full"),
            col("JE", "fact:amount", "decimal"), col("JFRQ", "fact:event_date", "date:ymd"),
            col("AH", "fact:case_no"),
        ),
        fact_type="court_fee",
    ),
    SourceSpec(
        id="enforced_companies", title="Enforced companies (企业被执行人)", domain="court",
        entity="business", format=json_doc("result", "items"), cadence="snapshot",
        columns=(
            col("id", "key"), col("company", "name"), col("credit_code", "uscc", "uscc"),
            col("legal_person.name", "legal_rep.name", "name:hanzi"),
            col("legal_person.id", "legal_rep.id_number", "id:masked"),
            col("court", "fact:court"), col("case_no", "fact:case_no"),
            col("amount", "fact:amount", "decimal"), col("filed", "fact:event_date", "date:iso"),
        ),
        fact_type="enforcement",
    ),
)
