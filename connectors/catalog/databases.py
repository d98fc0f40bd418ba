"""The live source databases: eight systems read incrementally from their own schemas.

Each spec's ``query`` joins the system's normalised tables back into one row per
record; its columns are the query's output names (the system's own, often
pinyin abbreviations such as ``xm`` 姓名, ``gmsfhm`` 公民身份号码, ``csrq`` 出生日期).
The queries are plain SQL that runs unchanged on PostgreSQL, MariaDB and the
embedded SQLite stand-in. ``DATABASE_PROFILES`` say how each simulated agency
behaves (who it knows, how it errs); ``simulation.databases`` owns the tables.

=====================  ========  ==========================  =============  ==========
system                 engine    tables                      cursor         deletes
=====================  ========  ==========================  =============  ==========
hukou_db               postgres  rk_jbxx dz_jbxx rk_dz       gxsj           soft (zxbz)
                                 hu_jbxx dm_xb
biz_registry_db        postgres  qy_jbxx qy_fddbr dm_hy      gxsj           soft (zxbz)
social_insurance_db    postgres  ac01 ac02 ab01              aae036         hard
court_enforcement_db   postgres  zx_aj zx_bzxr dm_xb         gxsj           hard
ecommerce_accounts_db  mysql     user_account user_address   gmt_modified   soft (is_deleted)
telecom_db             mysql     subscriber cust_info        update_time    soft (del_flag)
                                 dm_zjlx                     (max of both,
                                                             each indexed)
ride_hailing_db        mysql     t_driver t_driver_vehicle   updated_at     hard
                                 t_city
vehicle_registry_db    mysql     jdc_jbxx jdc_syr dm_hpzl    gxsj           hard
=====================  ========  ==========================  =============  ==========
"""

from __future__ import annotations

from dataclasses import replace

from connectors.catalog._helpers import col
from connectors.spec import DatabaseOptions, Engine, FormatOptions, SourceSpec
from simulation.profiles import CAREFUL, ORDINARY, SLOPPY, SimProfile

_DB = FormatOptions(kind="database")


def _db(
    source_id: str,
    engine: Engine,
    query: str,
    key: str,
    cursor: str,
    key_query: str,
    deleted_flag: str | None = None,
    cursor_columns: tuple[str, ...] = (),
) -> DatabaseOptions:
    return DatabaseOptions(
        engine=engine,
        database=f"tessera_{source_id}",
        query=" ".join(query.split()),
        key=key,
        cursor=cursor,
        key_query=key_query,
        deleted_flag=deleted_flag,
        cursor_columns=cursor_columns,
    )


DATABASE_SPECS: tuple[SourceSpec, ...] = (
    # ---------------------------------------------------------------- PostgreSQL
    SourceSpec(
        id="hukou_db",
        title="Household registration (户籍人口库)",
        domain="municipal",
        entity="person",
        format=_DB,
        cadence="delta",
        duplicate_free=True,
        columns=(
            col("rkbh", "key"),
            col("xm", "name", "name:hanzi"),
            col("xb", "sex", "sex:zh"),
            col("csrq", "dob", "date:iso"),
            col("gmsfhm", "id_number", "id:full"),
            col("csd", "birth_place"),
            col("sheng", "province"),
            col("shi", "city"),
            col("qx", "district"),
            col("jlxxz", "street"),
            col("yzbm", "postcode"),
            col("hzxm", "household_head.name", "name:hanzi"),
            col("hzsfhm", "household_head.id_number", "id:full"),
        ),
        database=_db(
            "hukou_db",
            "postgres",
            """SELECT p.rkbh, p.xm, x.mc AS xb, p.csrq, p.gmsfhm, p.csd,
                      d.sheng, d.shi, d.qx, d.jlxxz, d.yzbm,
                      hz.xm AS hzxm, hz.gmsfhm AS hzsfhm, p.zxbz, p.gxsj
               FROM rk_jbxx p
               LEFT JOIN dm_xb x ON x.dm = p.xb
               LEFT JOIN rk_dz l ON l.rkbh = p.rkbh AND l.dzlx = 1
               LEFT JOIN dz_jbxx d ON d.dzbh = l.dzbh
               LEFT JOIN hu_jbxx h ON h.hh = p.hh
               LEFT JOIN rk_jbxx hz ON hz.rkbh = h.hzrkbh""",
            key="rkbh",
            cursor="gxsj",
            key_query="SELECT rkbh FROM rk_jbxx",
            deleted_flag="zxbz",
        ),
        description="Resident population register: person, address and household tables; "
        "deregistration (注销) sets zxbz = 1.",
    ),
    SourceSpec(
        id="biz_registry_db",
        title="Business registry (市场主体登记)",
        domain="municipal",
        entity="business",
        format=_DB,
        cadence="delta",
        duplicate_free=True,
        fact_type="business_registration",
        columns=(
            col("qyid", "key"),
            col("qymc", "name"),
            col("tyshxydm", "uscc", "uscc"),
            col("hymc", "industry"),
            col("zs", "address", "address:full"),
            col("yzbm", "postcode"),
            col("clrq", "fact:founded", "date:iso"),
            col("fddbr", "legal_rep.name", "name:hanzi"),
            col("fddbr_zjhm", "legal_rep.id_number", "id:full"),
            col("fddbr_lxdh", "legal_rep.phone", "phone:plain", required=False),
        ),
        database=_db(
            "biz_registry_db",
            "postgres",
            """SELECT q.qyid, q.qymc, q.tyshxydm, h.hymc, q.zs, q.yzbm, q.clrq,
                      f.xm AS fddbr, f.zjhm AS fddbr_zjhm, f.lxdh AS fddbr_lxdh, q.zxbz, q.gxsj
               FROM qy_jbxx q
               LEFT JOIN dm_hy h ON h.hydm = q.hydm
               LEFT JOIN qy_fddbr f ON f.qyid = q.qyid""",
            key="qyid",
            cursor="gxsj",
            key_query="SELECT qyid FROM qy_jbxx",
            deleted_flag="zxbz",
        ),
        description="Enterprise register with its legal representatives; integer keys; "
        "industry from the GB/T 4754 section code table.",
    ),
    SourceSpec(
        id="social_insurance_db",
        title="Social insurance enrolment (社会保险)",
        domain="municipal",
        entity="person",
        format=_DB,
        cadence="delta",
        fact_type="insurance_enrolment",
        columns=(
            col("aac001", "key"),
            col("aac003", "name", "name:hanzi"),
            col("aac004", "sex", "sex:12"),
            col("aac006", "dob", "date:iso"),
            col("aac002", "id_number", "id:full"),
            col("aae005", "phone", "phone:plain"),
            col("aae006", "address", "address:full"),
            col("aab004", "employer.name"),
            col("aab998", "employer.uscc", "uscc"),
            col("aac030", "fact:insured_since", "date:iso"),
            col("aac040", "fact:wage", "decimal"),
        ),
        database=_db(
            "social_insurance_db",
            "postgres",
            """SELECT a.aac001, a.aac003, a.aac004, a.aac006, a.aac002, a.aae005, a.aae006,
                      b.aab004, b.aab998, c.aac030, c.aac040, a.aae036
               FROM ac01 a
               JOIN ac02 c ON c.aac001 = a.aac001
               LEFT JOIN ab01 b ON b.aab001 = c.aab001""",
            key="aac001",
            cursor="aae036",
            key_query="SELECT aac001 FROM ac01",
        ),
        description="Insured persons (ac01), their enrolment with an employer unit (ac02, ab01); "
        "records transferred out are deleted.",
    ),
    SourceSpec(
        id="court_enforcement_db",
        title="Enforcement case management (执行案件管理)",
        domain="court",
        entity="person",
        format=_DB,
        cadence="delta",
        fact_type="enforcement_case",
        columns=(
            col("ajbh", "key"),
            col("ah", "fact:case_no"),
            col("zxfy", "fact:court"),
            col("lasj", "fact:event_date", "date:iso"),
            col("sqzxbdje", "fact:amount", "decimal"),
            col("xm", "name", "name:hanzi"),
            col("xb", "sex", "sex:zh"),
            col("csrq", "dob", "date:iso"),
            col("sfzh", "id_number", "id:full"),
            col("dz", "address", "address:full"),
        ),
        database=_db(
            "court_enforcement_db",
            "postgres",
            """SELECT a.ajbh, a.ah, a.zxfy, a.lasj, a.sqzxbdje, r.xm, x.mc AS xb, r.csrq, r.sfzh, r.dz, a.gxsj
               FROM zx_aj a
               JOIN zx_bzxr r ON r.ajbh = a.ajbh
               LEFT JOIN dm_xb x ON x.dm = r.xb""",
            key="ajbh",
            cursor="gxsj",
            key_query="SELECT ajbh FROM zx_aj",
        ),
        description="Enforcement cases (zx_aj) with the person subject to enforcement (zx_bzxr).",
    ),
    # ---------------------------------------------------------------- MariaDB / MySQL
    SourceSpec(
        id="ecommerce_accounts_db",
        title="E-commerce accounts (电商用户)",
        domain="commercial",
        entity="person",
        format=_DB,
        cadence="delta",
        columns=(
            col("user_id", "key"),
            col("real_name", "name", "name:hanzi"),
            col("mobile", "phone", "phone:plain"),
            col("email", "email", "email", required=False),
            col("gender", "sex", "sex:12"),
            col("birthday", "dob", "date:iso", required=False),
            col("id_card_masked", "id_number", "id:masked"),
            col("receiver_province", "province"),
            col("receiver_city", "city"),
            col("receiver_district", "district"),
            col("receiver_detail", "street"),
            col("receiver_zip", "postcode", required=False),
        ),
        database=_db(
            "ecommerce_accounts_db",
            "mysql",
            """SELECT u.id AS user_id, u.real_name, u.mobile, u.email, u.gender, u.birthday, u.id_card_masked,
                      a.receiver_province, a.receiver_city, a.receiver_district, a.receiver_detail,
                      a.receiver_zip, u.is_deleted, u.gmt_modified
               FROM user_account u
               LEFT JOIN user_address a ON a.user_id = u.id AND a.is_default = 1""",
            key="user_id",
            cursor="gmt_modified",
            key_query="SELECT id AS user_id FROM user_account",
            deleted_flag="is_deleted",
        ),
        description="Shop accounts with real-name verification (masked ID) and a default address; "
        "people open second accounts; closing an account sets is_deleted = 1.",
    ),
    SourceSpec(
        id="telecom_db",
        title="Mobile subscribers (电信用户)",
        domain="commercial",
        entity="person",
        format=_DB,
        cadence="delta",
        fact_type="phone_subscription",
        columns=(
            col("subs_id", "key"),
            col("cust_name", "name", "name:hanzi"),
            col("cert_type", "attr:cert_type"),
            col("cert_no", "id_number", "id:full"),
            col("contact_addr", "address", "address:full"),
            col("msisdn", "phone", "phone:plain"),
            col("open_date", "fact:event_date", "date:iso"),
        ),
        database=_db(
            "telecom_db",
            "mysql",
            """SELECT s.subs_id, c.cust_name, t.cert_name AS cert_type, c.cert_no, c.contact_addr, s.msisdn,
                      s.open_date, s.del_flag,
                      CASE WHEN c.update_time > s.update_time THEN c.update_time ELSE s.update_time END
                        AS update_time,
                      s.update_time AS subs_update_time, c.update_time AS cust_update_time
               FROM subscriber s
               JOIN cust_info c ON c.cust_id = s.cust_id
               LEFT JOIN dm_zjlx t ON t.cert_type = c.cert_type""",
            key="subs_id",
            cursor="update_time",
            key_query="SELECT subs_id FROM subscriber",
            deleted_flag="del_flag",
            # The computed cursor has no index; each table's own stamp has one.
            cursor_columns=("subs_update_time", "cust_update_time"),
        ),
        description="Subscriptions and their customers, each table with its own update_time "
        "(the cursor is the later of the two); del_flag '2' marks a closed line.",
    ),
    SourceSpec(
        id="ride_hailing_db",
        title="Ride-hailing drivers (网约车司机)",
        domain="transport",
        entity="person",
        format=_DB,
        cadence="delta",
        columns=(
            col("driver_id", "key"),
            col("driver_name", "name", "name:hanzi"),
            col("id_card_no", "id_number", "id:full"),
            col("mobile", "phone", "phone:e164_spaced"),
            col("gender", "sex", "sex:mf"),
            col("city_name", "city"),
            col("plate_no", "plate", "plate", required=False),
        ),
        database=_db(
            "ride_hailing_db",
            "mysql",
            """SELECT d.driver_id, d.driver_name, d.id_card_no, d.mobile, d.gender, c.city_name, v.plate_no,
                      d.updated_at
               FROM t_driver d
               LEFT JOIN t_city c ON c.city_id = d.city_id
               LEFT JOIN t_driver_vehicle v ON v.driver_id = d.driver_id""",
            key="driver_id",
            cursor="updated_at",
            key_query="SELECT driver_id FROM t_driver",
        ),
        description="Registered drivers with their service city and (if they own one) their car; "
        "drivers who leave are deleted.",
    ),
    SourceSpec(
        id="vehicle_registry_db",
        title="Motor vehicle registry (机动车登记)",
        domain="transport",
        entity="person",
        format=_DB,
        cadence="delta",
        fact_type="vehicle_registration",
        columns=(
            col("xh", "key"),
            col("hphm", "plate", "plate"),
            col("hpzl", "fact:plate_type"),
            col("clpp", "fact:brand"),
            col("ccdjrq", "fact:event_date", "date:iso"),
            col("syr", "name", "name:hanzi"),
            col("sfzmhm", "id_number", "id:full"),
            col("zsxxdz", "address", "address:full"),
            col("lxdh", "phone", "phone:dashed"),
        ),
        database=_db(
            "vehicle_registry_db",
            "mysql",
            """SELECT v.xh, v.hphm, z.mc AS hpzl, v.clpp, v.ccdjrq, o.syr, o.sfzmhm, o.zsxxdz, o.lxdh, v.gxsj
               FROM jdc_jbxx v
               JOIN jdc_syr o ON o.xh = v.xh
               LEFT JOIN dm_hpzl z ON z.dm = v.hpzl""",
            key="xh",
            cursor="gxsj",
            key_query="SELECT xh FROM jdc_jbxx",
        ),
        description="Registered vehicles (jdc_jbxx) and their owners (jdc_syr); scrapped vehicles "
        "are deleted.",
    ),
)

BRANDS = ("大众", "丰田", "本田", "比亚迪", "吉利", "长安", "日产", "别克", "奥迪", "宝马")
PLATE_TYPES = ("小型汽车", "小型汽车", "小型汽车", "小型汽车", "大型汽车")

DATABASE_PROFILES: dict[str, SimProfile] = {
    # daily_rate: share of not-yet-registered members who register each day.
    "hukou_db": SimProfile(
        "household_members",
        replace(CAREFUL, duplicate=0.0),
        coverage=0.97,
        daily_rate=0.01,
        key_prefix="RK",
    ),
    "biz_registry_db": SimProfile(
        "businesses",
        replace(CAREFUL, duplicate=0.0),
        coverage=0.95,
        daily_rate=0.02,
        facts={"founded": ("ctx", "founded")},
    ),
    "social_insurance_db": SimProfile(
        "employed",
        ORDINARY,
        coverage=0.8,
        daily_rate=0.01,
        key_prefix="SB",
        facts={"insured_since": ("back", 5000), "wage": ("money", 6500, 0.45)},
    ),
    "court_enforcement_db": SimProfile(
        "enforced",
        CAREFUL,
        coverage=0.9,
        daily_rate=0.05,
        key_prefix="ZX",
        facts={
            "case_no": ("ctx", "case_no"),
            "court": ("ctx", "court"),
            "event_date": ("ctx", "filed"),
            "amount": ("ctx", "amount"),
        },
    ),
    "ecommerce_accounts_db": SimProfile("persons", SLOPPY, coverage=0.5, daily_rate=0.01),
    "telecom_db": SimProfile(
        "persons",
        ORDINARY,
        coverage=0.7,
        daily_rate=0.01,
        key_prefix="S",
        facts={"cert_type": ("choice", ("居民身份证",)), "event_date": ("back", 4000)},
    ),
    "ride_hailing_db": SimProfile("drivers", ORDINARY, coverage=0.3, daily_rate=0.01),
    "vehicle_registry_db": SimProfile(
        "vehicle_owners",
        CAREFUL,
        coverage=0.95,
        daily_rate=0.02,
        key_prefix="V",
        facts={
            "plate_type": ("choice", PLATE_TYPES),
            "brand": ("choice", BRANDS),
            "event_date": ("back", 4000),
        },
    ),
}
