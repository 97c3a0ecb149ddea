//! The emulator: every platform endpoint, the admin API, auth, bad input, faults.

use std::time::{Duration, Instant};

use atlas_actix::emulator::{AtlasData, DataFileError, Emulator, Push};
use awc::http::{Method, StatusCode};
use serde_json::{json, Value};

use crate::common::{call, example_data, example_data_path, start_emulator, Platform};

const CUSTOMER_PATH: &str = "/external/customers/external-id";

fn customer_path(external_id: &str) -> String {
    format!("{CUSTOMER_PATH}/{external_id}/with-active-and-upcoming-subscriptions")
}

fn plan_ids(customer: &Value, list: &str) -> Vec<String> {
    customer[list]
        .as_array()
        .into_iter()
        .flatten()
        .map(|s| s["planId"].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[actix_rt::test]
async fn every_platform_route_needs_the_key_but_checkout_and_admin_do_not() {
    let emulator = start_emulator();
    for path in [
        "/external/merchants/me",
        "/external/pricingModel",
        "/external/nothing-here",
    ] {
        let missing = call(emulator.url(), None, Method::GET, path, None).await;
        assert_eq!(missing.status, StatusCode::UNAUTHORIZED, "{path}");
        assert_eq!(missing.body["error"], "Unauthorized");
        let wrong = call(emulator.url(), Some("sk_wrong"), Method::GET, path, None).await;
        assert_eq!(wrong.status, StatusCode::UNAUTHORIZED, "{path}");
    }
    let unknown_checkout = call(
        emulator.url(),
        None,
        Method::GET,
        "/__checkout/cs_nope",
        None,
    )
    .await;
    assert_eq!(unknown_checkout.status, StatusCode::NOT_FOUND);
    let admin = call(emulator.url(), None, Method::GET, "/__admin/events", None).await;
    assert_eq!(admin.status, StatusCode::OK);
}

#[actix_rt::test]
async fn an_api_key_given_to_the_builder_replaces_the_files() {
    let emulator = Emulator::builder(example_data())
        .api_key("sk_other")
        .start()
        .unwrap();
    assert_eq!(emulator.api_key(), "sk_other");
    let old = call(
        emulator.url(),
        Some("sk_test_atlas_actix_demo"),
        Method::GET,
        "/external/merchants/me",
        None,
    )
    .await;
    assert_eq!(old.status, StatusCode::UNAUTHORIZED);
    let new = Platform {
        emulator: &emulator,
    }
    .get("/external/merchants/me")
    .await;
    assert_eq!(new.status, StatusCode::OK);
}

#[actix_rt::test]
async fn serves_the_merchant_and_the_pricing_model_with_unknown_fields() {
    let emulator = start_emulator();
    let platform = Platform {
        emulator: &emulator,
    };
    let merchant = platform.get("/external/merchants/me").await;
    assert_eq!(merchant.status, StatusCode::OK);
    assert_eq!(merchant.body["defaultPlanId"], "plan_free");
    let model = platform.get("/external/pricingModel").await;
    assert_eq!(model.status, StatusCode::OK);
    assert_eq!(model.body["plans"].as_array().unwrap().len(), 4);
    // Fields the models do not name come back as they were in the file.
    let raw: Value =
        serde_json::from_str(&std::fs::read_to_string(example_data_path()).unwrap()).unwrap();
    assert_eq!(model.body, raw["pricingModel"]);
}

#[actix_rt::test]
async fn customers_are_found_by_decoded_external_id() {
    let mut data = example_data();
    let mut tricky = data.customers[1].clone();
    tricky.external_id = "a/b?c&d#e %".to_owned();
    tricky.id = "cus_tricky".to_owned();
    data.customers.push(tricky);
    let emulator = Emulator::start(data).unwrap();
    let platform = Platform {
        emulator: &emulator,
    };

    let org = platform.get(&customer_path("org_standard_corp")).await;
    assert_eq!(org.status, StatusCode::OK);
    assert_eq!(plan_ids(&org.body, "activeSubscriptions"), ["plan_team"]);
    assert_eq!(org.body["stripeId"], "cus_stripe_cus_standard_corp");

    let tricky = platform
        .get(&customer_path("a%2Fb%3Fc%26d%23e%20%25"))
        .await;
    assert_eq!(tricky.status, StatusCode::OK);
    assert_eq!(tricky.body["id"], "cus_tricky");

    let unknown = platform.get(&customer_path("nobody")).await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    assert_eq!(unknown.body["message"], "Customer not found");
}

#[actix_rt::test]
async fn creating_a_customer_starts_the_default_plan_once_and_pushes() {
    let emulator = start_emulator();
    let mut pushes = emulator.pushes();
    let platform = Platform {
        emulator: &emulator,
    };
    let body = json!({"externalId": "user_new", "email": "new@example.com", "name": "New"});
    let created = platform
        .send(Method::POST, "/external/customers", body.clone())
        .await;
    assert_eq!(created.status, StatusCode::CREATED);
    assert_eq!(created.body["email"], "new@example.com");
    assert_eq!(created.body["merchantId"], "mer_acme");
    assert_eq!(
        plan_ids(&created.body, "activeSubscriptions"),
        ["plan_free"]
    );
    assert_eq!(
        pushes.try_recv().unwrap(),
        Push::InvalidateCustomer("user_new".to_owned())
    );

    let again = platform
        .send(
            Method::POST,
            "/external/customers",
            json!({"externalId": "user_new", "name": "Other"}),
        )
        .await;
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(again.body["name"], "New");
    assert_eq!(again.body["id"], created.body["id"]);

    for bad in [
        json!({}),
        json!({"externalId": ""}),
        json!({"externalId": 7}),
        json!({"externalId": "x", "email": 3}),
        json!([1]),
    ] {
        let answer = platform
            .send(Method::POST, "/external/customers", bad.clone())
            .await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{bad}");
        assert!(answer.body["error"].is_string());
    }
    let customers = platform
        .admin(Method::GET, "/__admin/customers", None)
        .await;
    assert_eq!(customers.body.as_array().unwrap().len(), 5);
}

#[actix_rt::test]
async fn invoices_filter_sort_paginate_and_fill_in_amounts() {
    let emulator = start_emulator();
    let platform = Platform {
        emulator: &emulator,
    };
    let all = platform
        .get(r#"/external/invoices/amounts?customer.externalId=org_standard_corp&statusNotInList=%5B%22void%22%2C%22paused%22%5D&all=true"#)
        .await;
    assert_eq!(all.status, StatusCode::OK);
    assert_eq!(all.body["count"], 3);
    assert_eq!(all.body["pages"], 1);
    let first = &all.body["results"][0];
    assert_eq!(first["id"], "inv_standard_1");
    assert_eq!(first["amount"], 100.25, "the sum of its line items");

    let page = platform
        .get("/external/invoices/amounts?customer.externalId=org_standard_corp&page=2&pageSize=3&orderBy=issueDate&order=desc")
        .await;
    assert_eq!(page.body["count"], 4);
    assert_eq!(page.body["pages"], 2);
    assert_eq!(page.body["currentPage"], 2);
    assert_eq!(page.body["results"][0]["id"], "inv_standard_void");

    let none = platform
        .get("/external/invoices/amounts?customer.externalId=nobody")
        .await;
    assert_eq!(none.body["count"], 0);

    for bad in [
        "/external/invoices/amounts",
        "/external/invoices/amounts?customer.externalId=x&page=0",
        "/external/invoices/amounts?customer.externalId=x&statusNotInList=void",
        "/external/invoices/amounts?customer.externalId=x&orderBy=id&order=up",
    ] {
        assert_eq!(
            platform.get(bad).await.status,
            StatusCode::BAD_REQUEST,
            "{bad}"
        );
    }
}

#[actix_rt::test]
async fn line_items_come_with_their_invoice_and_only_for_its_customer() {
    let emulator = start_emulator();
    let platform = Platform {
        emulator: &emulator,
    };
    let items = platform
        .get("/external/invoiceLineItems/expanded?invoiceId=inv_standard_1&customer.externalId=org_standard_corp")
        .await;
    assert_eq!(items.status, StatusCode::OK);
    assert_eq!(items.body.as_array().unwrap().len(), 2);
    assert_eq!(items.body[0]["invoice"]["id"], "inv_standard_1");
    assert_eq!(items.body[0]["invoice"]["amount"], 100.25);

    let stolen = platform
        .get("/external/invoiceLineItems/expanded?invoiceId=inv_standard_1&customer.externalId=user_erin")
        .await;
    assert_eq!(stolen.status, StatusCode::OK);
    assert_eq!(stolen.body, json!([]));
    let missing = platform
        .get("/external/invoiceLineItems/expanded?invoiceId=inv_standard_1")
        .await;
    assert_eq!(missing.status, StatusCode::BAD_REQUEST);
}

#[actix_rt::test]
async fn transactions_and_credit_usage() {
    let emulator = start_emulator();
    let platform = Platform {
        emulator: &emulator,
    };
    let transactions = platform
        .get("/external/transactions?allocationBlock.customer.externalId=org_standard_corp&pageSize=1&page=2")
        .await;
    assert_eq!(transactions.body["count"], 2);
    assert_eq!(transactions.body["results"][0]["id"], "tx_standard_2");
    assert_eq!(
        platform.get("/external/transactions").await.status,
        StatusCode::BAD_REQUEST
    );

    let given = platform
        .get("/external/customers/org_standard_corp/customPricingUnits/cpu_image_credits/credit-usage")
        .await;
    assert_eq!(given.body["totalUsed"], 80);
    let by_internal_id = platform
        .get("/external/customers/cus_standard_corp/customPricingUnits/cpu_image_credits/credit-usage")
        .await;
    assert_eq!(by_internal_id.body, given.body);
    let derived = platform
        .get("/external/customers/user_dave/customPricingUnits/cpu_image_credits/credit-usage")
        .await;
    assert_eq!(
        derived.body,
        json!({"customPricingUnitId": "cpu_image_credits", "displayName": "Image credits",
               "totalAllocated": 0, "totalUsed": 0, "remaining": 0, "nextExpiring": null})
    );
    for path in [
        "/external/customers/nobody/customPricingUnits/cpu_image_credits/credit-usage",
        "/external/customers/user_dave/customPricingUnits/cpu_nope/credit-usage",
    ] {
        assert_eq!(
            platform.get(path).await.status,
            StatusCode::NOT_FOUND,
            "{path}"
        );
    }
}

#[actix_rt::test]
async fn subscribing_to_a_free_plan_activates_it_at_once() {
    let emulator = start_emulator();
    let mut pushes = emulator.pushes();
    let platform = Platform {
        emulator: &emulator,
    };
    let answer = platform
        .send(
            Method::POST,
            "/external/plans/plan_free/subscribe/standard",
            json!({"billingCadence": "monthly", "id": "user_erin", "successUrl": "https://app.example/done"}),
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.body, json!({"url": "https://app.example/done"}));
    assert_eq!(
        pushes.try_recv().unwrap(),
        Push::InvalidateCustomer("user_erin".into())
    );
    let erin = platform.get(&customer_path("user_erin")).await;
    assert_eq!(plan_ids(&erin.body, "activeSubscriptions"), ["plan_free"]);
    let ended = platform
        .get("/external/subscriptions/sub_erin_pro/expanded")
        .await;
    assert_eq!(ended.body["status"], "ended");
    assert!(ended.body["endDate"].is_string());
}

#[actix_rt::test]
async fn a_paid_plan_goes_through_a_checkout_page() {
    let emulator = start_emulator();
    let platform = Platform {
        emulator: &emulator,
    };
    let session = platform
        .send(
            Method::POST,
            "/external/plans/plan_team/subscribe/standard",
            json!({"billingCadence": "annually", "id": "user_dave", "successUrl": "https://app.example/ok", "email": "d@x.example"}),
        )
        .await;
    assert_eq!(session.status, StatusCode::OK);
    assert_eq!(session.body["object"], "checkout.session");
    assert_eq!(session.body["amount_total"], 990);
    assert_eq!(session.body["customer_email"], "d@x.example");
    let url = session.body["url"].as_str().unwrap().to_owned();
    assert!(
        url.starts_with(&format!("{}/__checkout/", emulator.url())),
        "{url}"
    );

    let dave = platform.get(&customer_path("user_dave")).await;
    assert_eq!(
        plan_ids(&dave.body, "activeSubscriptions"),
        ["plan_free"],
        "not before the checkout"
    );

    let mut pushes = emulator.pushes();
    let path = &url[emulator.url().len()..];
    for _ in 0..2 {
        let visit = call(emulator.url(), None, Method::GET, path, None).await;
        assert_eq!(visit.status, StatusCode::FOUND);
        assert_eq!(
            visit.headers.get("location").unwrap(),
            "https://app.example/ok"
        );
    }
    assert_eq!(
        pushes.try_recv().unwrap(),
        Push::InvalidateCustomer("user_dave".into())
    );
    assert!(pushes.try_recv().is_err(), "a second visit changes nothing");
    let dave = platform.get(&customer_path("user_dave")).await;
    assert_eq!(plan_ids(&dave.body, "activeSubscriptions"), ["plan_team"]);
}

#[actix_rt::test]
async fn subscribe_refuses_bad_requests() {
    let emulator = start_emulator();
    let platform = Platform {
        emulator: &emulator,
    };
    let ok = json!({"billingCadence": "monthly", "id": "user_dave", "successUrl": "https://app.example"});
    let cases = [
        (
            "plan_pro",
            json!({"billingCadence": "weekly", "id": "user_dave", "successUrl": "u"}),
            StatusCode::BAD_REQUEST,
        ),
        (
            "plan_pro",
            json!({"billingCadence": "monthly", "successUrl": "u"}),
            StatusCode::BAD_REQUEST,
        ),
        (
            "plan_pro",
            json!({"billingCadence": "monthly", "id": "user_dave"}),
            StatusCode::BAD_REQUEST,
        ),
        (
            "plan_pro",
            json!({"billingCadence": "monthly", "id": "user_dave", "successUrl": "u", "email": 1}),
            StatusCode::BAD_REQUEST,
        ),
        ("plan_nope", ok.clone(), StatusCode::NOT_FOUND),
        ("plan_enterprise", ok.clone(), StatusCode::FORBIDDEN),
    ];
    for (plan, body, status) in cases {
        let answer = platform
            .send(
                Method::POST,
                &format!("/external/plans/{plan}/subscribe/standard"),
                body.clone(),
            )
            .await;
        assert_eq!(answer.status, status, "{plan} {body}");
        assert_eq!(answer.body["error"], answer.body["message"]);
    }
    // Frank may buy the private plan.
    let frank = json!({"billingCadence": "annually", "id": "user_frank", "successUrl": "https://app.example"});
    let answer = platform
        .send(
            Method::POST,
            "/external/plans/plan_enterprise/subscribe/standard",
            frank,
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK);
    // An unknown customer is created, without the default plan.
    let newcomer =
        json!({"billingCadence": "monthly", "id": "user_zoe", "successUrl": "https://app.example"});
    let answer = platform
        .send(
            Method::POST,
            "/external/plans/plan_pro/subscribe/standard",
            newcomer,
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK);
    let zoe = platform.get(&customer_path("user_zoe")).await;
    assert_eq!(
        plan_ids(&zoe.body, "activeSubscriptions"),
        Vec::<String>::new()
    );
}

#[actix_rt::test]
async fn payment_method_checkout_sets_a_card() {
    let emulator = start_emulator();
    let platform = Platform {
        emulator: &emulator,
    };
    let path = format!("{CUSTOMER_PATH}/user_erin/stripe/payment-method");
    let session = platform
        .send(
            Method::PATCH,
            &path,
            json!({"successUrl": "https://app.example/card"}),
        )
        .await;
    assert_eq!(session.status, StatusCode::OK);
    assert_eq!(session.body["mode"], "setup");
    assert_eq!(session.body["amount_total"], 0);
    let url = session.body["url"].as_str().unwrap();
    let visit = call(
        emulator.url(),
        None,
        Method::GET,
        &url[emulator.url().len()..],
        None,
    )
    .await;
    assert_eq!(visit.status, StatusCode::FOUND);
    let erin = platform.get(&customer_path("user_erin")).await;
    assert_eq!(erin.body["paymentMethod"], "pm_card_visa");

    let nobody = platform
        .send(
            Method::PATCH,
            &format!("{CUSTOMER_PATH}/nobody/stripe/payment-method"),
            json!({"successUrl": "u"}),
        )
        .await;
    assert_eq!(nobody.status, StatusCode::NOT_FOUND);
    assert_eq!(
        platform.send(Method::PATCH, &path, json!({})).await.status,
        StatusCode::BAD_REQUEST
    );
}

#[actix_rt::test]
async fn cancel_falls_back_to_the_default_plan_and_renew_clears_the_end() {
    let emulator = start_emulator();
    let platform = Platform {
        emulator: &emulator,
    };
    let cancel = |id: &'static str, body: Value| {
        let platform = &platform;
        async move {
            platform
                .send(
                    Method::POST,
                    &format!("/external/subscriptions/{id}/cancel"),
                    body,
                )
                .await
        }
    };
    assert_eq!(
        cancel(
            "sub_erin_pro",
            json!({"externalCustomerId": "user_erin", "type": "later"})
        )
        .await
        .status,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        cancel(
            "sub_erin_pro",
            json!({"externalCustomerId": "user_dave", "type": "active"})
        )
        .await
        .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        cancel(
            "sub_erin_pro",
            json!({"externalCustomerId": "nobody", "type": "active"})
        )
        .await
        .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        cancel("sub_erin_pro", json!({"type": "active"}))
            .await
            .status,
        StatusCode::BAD_REQUEST
    );

    let cancelled = cancel(
        "sub_erin_pro",
        json!({"externalCustomerId": "user_erin", "type": "active"}),
    )
    .await;
    assert_eq!(cancelled.status, StatusCode::OK);
    assert_eq!(cancelled.body["status"], "ended");
    let erin = platform.get(&customer_path("user_erin")).await;
    assert_eq!(plan_ids(&erin.body, "activeSubscriptions"), ["plan_free"]);

    // An upcoming subscription is deleted and the active ones run on.
    let mut upcoming = erin.body["activeSubscriptions"][0].clone();
    upcoming["id"] = json!("sub_erin_next");
    let mut active = erin.body["activeSubscriptions"][0].clone();
    active["endDate"] = json!("2099-01-01T00:00:00.000Z");
    let put = platform
        .admin(
            Method::PUT,
            "/__admin/customers/user_erin",
            Some(json!({"upcomingSubscriptions": [upcoming], "activeSubscriptions": [active]})),
        )
        .await;
    assert_eq!(put.status, StatusCode::OK);
    let deleted = cancel(
        "sub_erin_next",
        json!({"externalCustomerId": "user_erin", "type": "upcoming"}),
    )
    .await;
    assert_eq!(deleted.body["status"], "deleted");
    let erin = platform.get(&customer_path("user_erin")).await;
    assert_eq!(erin.body["upcomingSubscriptions"], json!([]));
    assert!(erin.body["activeSubscriptions"][0]
        .get("endDate")
        .is_none_or(Value::is_null));

    let sub_id = erin.body["activeSubscriptions"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut ending = erin.body["activeSubscriptions"][0].clone();
    ending["endDate"] = json!("2099-01-01T00:00:00.000Z");
    platform
        .admin(
            Method::PUT,
            "/__admin/customers/user_erin",
            Some(json!({"activeSubscriptions": [ending]})),
        )
        .await;
    let renewed = platform
        .send(
            Method::POST,
            &format!("/external/subscriptions/{sub_id}/renew"),
            json!({"externalCustomerId": "user_erin"}),
        )
        .await;
    assert_eq!(renewed.status, StatusCode::OK);
    assert!(renewed.body.get("endDate").is_none_or(Value::is_null));
    let other = platform
        .send(
            Method::POST,
            &format!("/external/subscriptions/{sub_id}/renew"),
            json!({"externalCustomerId": "user_dave"}),
        )
        .await;
    assert_eq!(other.status, StatusCode::NOT_FOUND);
}

#[actix_rt::test]
async fn subscriptions_are_expanded_with_their_plan() {
    let mut data = example_data();
    data.customers[1].active_subscriptions[0].plan = None;
    let emulator = Emulator::start(data).unwrap();
    let platform = Platform {
        emulator: &emulator,
    };
    let sub = platform
        .get("/external/subscriptions/sub_dave_free/expanded")
        .await;
    assert_eq!(sub.status, StatusCode::OK);
    assert_eq!(sub.body["plan"]["name"], "Free");
    assert_eq!(sub.body["plan"]["merchantId"], "mer_acme");
    assert_eq!(
        platform
            .get("/external/subscriptions/sub_nope/expanded")
            .await
            .status,
        StatusCode::NOT_FOUND
    );
}

fn event(key: &str, quantity: Value) -> Value {
    json!({"customerId": "cus_dave", "eventName": "ent_ai_tokens", "generatedAt": "2025-06-01T00:00:00.000Z",
           "idempotencyKey": key, "data": {"quantity": quantity}})
}

#[actix_rt::test]
async fn events_are_stored_once_per_idempotency_key() {
    let emulator = start_emulator();
    let platform = Platform {
        emulator: &emulator,
    };
    let first = platform
        .send(
            Method::POST,
            "/external/event",
            json!([event("k1", json!(5)), event("k2", json!(1.5))]),
        )
        .await;
    assert_eq!(first.status, StatusCode::OK);
    assert_eq!(first.body, json!({"received": 2}));
    let retry = platform
        .send(
            Method::POST,
            "/external/event",
            json!([event("k1", json!(5)), event("k3", json!(2))]),
        )
        .await;
    assert_eq!(retry.body, json!({"received": 2}));
    let bad = platform
        .send(
            Method::POST,
            "/external/event",
            json!([event("k4", json!(1)), event("k5", json!("many"))]),
        )
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(bad.body["error"].as_str().unwrap().starts_with("event 1"));
    assert_eq!(
        platform
            .send(Method::POST, "/external/event", json!({"events": []}))
            .await
            .status,
        StatusCode::BAD_REQUEST
    );

    let stored = platform.admin(Method::GET, "/__admin/events", None).await;
    let keys: Vec<&str> = stored
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["idempotencyKey"].as_str().unwrap())
        .collect();
    assert_eq!(keys, ["k1", "k2", "k3"]);
}

#[actix_rt::test]
async fn registrations_and_sdk_versions_are_recorded() {
    let emulator = start_emulator();
    let platform = Platform {
        emulator: &emulator,
    };
    let ok = platform
        .send(
            Method::PUT,
            "/external/billables/register",
            json!({"slugs": ["seats", "sso"]}),
        )
        .await;
    assert_eq!(ok.status, StatusCode::OK);
    for bad in [json!({"slugs": [1]}), json!(["seats"]), json!({})] {
        let answer = platform
            .send(Method::PUT, "/external/billables/register", bad.clone())
            .await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{bad}");
    }
    let version = json!([{"library": "atlas-actix", "version": "0.1.0", "extra": true}]);
    assert_eq!(
        platform
            .send(Method::POST, "/external/sdk/version", version)
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        platform
            .send(
                Method::POST,
                "/external/sdk/version",
                json!([{"library": 1}])
            )
            .await
            .status,
        StatusCode::BAD_REQUEST
    );

    let registrations = platform
        .admin(Method::GET, "/__admin/registrations", None)
        .await;
    assert_eq!(registrations.body, json!(["seats", "sso"]));
    let versions = platform
        .admin(Method::GET, "/__admin/sdk-versions", None)
        .await;
    assert_eq!(
        versions.body,
        json!([{"library": "atlas-actix", "version": "0.1.0"}])
    );
}

#[actix_rt::test]
async fn admin_put_merges_shallowly_and_pushes_nothing() {
    let emulator = start_emulator();
    let mut pushes = emulator.pushes();
    let platform = Platform {
        emulator: &emulator,
    };
    let put = platform
        .admin(
            Method::PUT,
            "/__admin/customers/user_dave",
            Some(json!({"customPricingUnits": [], "vip": true, "externalId": "hijack"})),
        )
        .await;
    assert_eq!(put.status, StatusCode::OK);
    assert_eq!(put.body["vip"], true);
    assert_eq!(put.body["externalId"], "user_dave");
    let created = platform
        .admin(
            Method::PUT,
            "/__admin/customers/user_new",
            Some(json!({"name": "N"})),
        )
        .await;
    assert_eq!(created.status, StatusCode::OK);
    assert_eq!(
        created.body["activeSubscriptions"],
        json!([]),
        "no default plan for admin-created customers"
    );
    assert!(pushes.try_recv().is_err());

    for bad in [json!([1]), json!({"activeSubscriptions": "none"})] {
        let answer = platform
            .admin(
                Method::PUT,
                "/__admin/customers/user_dave",
                Some(bad.clone()),
            )
            .await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{bad}");
    }
    let dave = platform.get(&customer_path("user_dave")).await;
    assert_eq!(dave.body["vip"], true, "a refused change changes nothing");
}

#[actix_rt::test]
async fn admin_invalidate_pushes_and_counts_listeners() {
    let emulator = start_emulator();
    let platform = Platform {
        emulator: &emulator,
    };
    let none = platform
        .admin(
            Method::POST,
            "/__admin/invalidate",
            Some(json!({"plans": true})),
        )
        .await;
    assert_eq!(none.body, json!({"event": "invalidatePlans", "sockets": 0}));
    let mut pushes = emulator.pushes();
    let cases = [
        (
            json!({"customer": "user_dave"}),
            Push::InvalidateCustomer("user_dave".into()),
        ),
        (json!({"plans": true}), Push::InvalidatePlans),
        (json!({"merchant": true}), Push::InvalidateMerchant),
    ];
    for (body, push) in cases {
        let answer = platform
            .admin(Method::POST, "/__admin/invalidate", Some(body))
            .await;
        assert_eq!(answer.body["event"], push.event_name());
        assert_eq!(answer.body["sockets"], 1);
        assert_eq!(pushes.try_recv().unwrap(), push);
    }
    for bad in [json!({"plans": false}), json!({"customer": 1}), json!({})] {
        let answer = platform
            .admin(Method::POST, "/__admin/invalidate", Some(bad))
            .await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    }
}

#[actix_rt::test]
async fn requests_are_counted_by_route_and_reset_forgets_everything() {
    let emulator = Emulator::from_file(example_data_path())
        .unwrap()
        .start()
        .unwrap();
    let platform = Platform {
        emulator: &emulator,
    };
    platform.get(&customer_path("user_dave")).await;
    platform.get(&customer_path("user_erin")).await;
    platform.get("/external/nope").await;
    call(
        emulator.url(),
        None,
        Method::DELETE,
        "/external/pricingModel",
        None,
    )
    .await;
    platform
        .send(
            Method::POST,
            "/external/customers",
            json!({"externalId": "user_new"}),
        )
        .await;
    platform.admin(Method::GET, "/__admin/events", None).await;

    let counts = platform.admin(Method::GET, "/__admin/requests", None).await;
    assert_eq!(
        counts.body,
        json!({
            "GET /external/customers/external-id/:id/with-active-and-upcoming-subscriptions": 2,
            "GET /external/nope": 1,
            "DELETE /external/pricingModel": 1,
            "POST /external/customers": 1,
        })
    );
    let reset = platform.admin(Method::POST, "/__admin/reset", None).await;
    assert_eq!(reset.status, StatusCode::OK);
    assert_eq!(
        platform
            .admin(Method::GET, "/__admin/requests", None)
            .await
            .body,
        json!({})
    );
    let customers = platform
        .admin(Method::GET, "/__admin/customers", None)
        .await;
    assert_eq!(customers.body.as_array().unwrap().len(), 4);
    // Minted ids start again.
    let again = platform
        .send(
            Method::POST,
            "/external/customers",
            json!({"externalId": "user_new"}),
        )
        .await;
    assert_eq!(again.body["id"], "cus_new_1");
}

#[actix_rt::test]
async fn bad_requests_get_clear_errors() {
    let emulator = start_emulator();
    let platform = Platform {
        emulator: &emulator,
    };
    let malformed = platform
        .send(
            Method::POST,
            "/external/customers",
            json!("raw:{\"externalId\": "),
        )
        .await;
    assert_eq!(malformed.status, StatusCode::BAD_REQUEST);
    assert!(malformed.body["error"]
        .as_str()
        .unwrap()
        .contains("malformed JSON"));

    let huge = format!("raw:{{\"externalId\": \"{}\"}}", "x".repeat(1024 * 1024));
    let too_large = platform
        .send(Method::POST, "/external/customers", Value::String(huge))
        .await;
    assert_eq!(too_large.status, StatusCode::PAYLOAD_TOO_LARGE);

    let wrong_method = platform
        .send(Method::PUT, "/external/merchants/me", json!({}))
        .await;
    assert_eq!(wrong_method.status, StatusCode::METHOD_NOT_ALLOWED);
    let unknown = platform.get("/external/merchants/you").await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    assert_eq!(unknown.body["error"], "Not found");
    let admin_unknown = platform.admin(Method::GET, "/__admin/nothing", None).await;
    assert_eq!(admin_unknown.status, StatusCode::NOT_FOUND);

    let customers = platform
        .admin(Method::GET, "/__admin/customers", None)
        .await;
    assert_eq!(
        customers.body.as_array().unwrap().len(),
        4,
        "nothing was created"
    );
}

#[actix_rt::test]
async fn faults_answer_errors_late_or_not_json_then_stop() {
    let emulator = start_emulator();
    let platform = Platform {
        emulator: &emulator,
    };
    let add = |fault: Value| platform.admin(Method::POST, "/__admin/faults", Some(fault));
    assert_eq!(
        add(json!({"path": "/external/pricingModel", "times": 2, "status": 503}))
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        platform.get("/external/pricingModel").await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(
        platform.get("/external/merchants/me").await.status,
        StatusCode::OK
    );
    assert_eq!(
        platform.get("/external/pricingModel").await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(
        platform.get("/external/pricingModel").await.status,
        StatusCode::OK
    );

    add(json!({"invalidJson": true, "times": 1})).await;
    let garbage = platform.get("/external/merchants/me").await;
    assert_eq!(garbage.status, StatusCode::OK);
    assert!(serde_json::from_str::<Value>(&garbage.text).is_err());

    add(json!({"delayMs": 300, "times": 1})).await;
    let started = Instant::now();
    assert_eq!(
        platform.get("/external/merchants/me").await.status,
        StatusCode::OK
    );
    assert!(started.elapsed() >= Duration::from_millis(300));

    add(json!({"status": 500})).await;
    assert_eq!(
        platform
            .admin(Method::GET, "/__admin/faults", None)
            .await
            .body
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        platform.get("/external/merchants/me").await.status,
        StatusCode::INTERNAL_SERVER_ERROR
    );
    platform
        .admin(Method::DELETE, "/__admin/faults", None)
        .await;
    assert_eq!(
        platform.get("/external/merchants/me").await.status,
        StatusCode::OK
    );

    for bad in [json!({"status": 1000}), json!({"statsu": 500}), json!([])] {
        assert_eq!(
            add(bad.clone()).await.status,
            StatusCode::BAD_REQUEST,
            "{bad}"
        );
    }
}

#[test]
fn data_file_errors_name_the_file_line_and_column() {
    let dir = std::env::temp_dir().join(format!("atlas-data-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let broken = dir.join("broken.json");
    std::fs::write(&broken, "{\n  \"apiKey\": \"k\",\n  \"merchant\": {,\n}").unwrap();
    let err = AtlasData::from_file(&broken).unwrap_err();
    assert!(
        matches!(
            err,
            DataFileError::Parse {
                line: 3,
                column: 16,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .starts_with(&format!("{}:3:16: ", broken.display())),
        "{err}"
    );

    let wrong_type = dir.join("wrong-type.json");
    std::fs::write(
        &wrong_type,
        r#"{"apiKey": 5, "merchant": {}, "pricingModel": {}, "customers": []}"#,
    )
    .unwrap();
    let err = AtlasData::from_file(&wrong_type).unwrap_err();
    assert!(err.to_string().contains("invalid type"), "{err}");

    let duplicate = r#"{"apiKey": "k", "merchant": {"mode": "test"}, "pricingModel": {"entitlements": [], "plans": []},
        "customers": [{"id": "a", "externalId": "x"}, {"id": "b", "externalId": "x"}]}"#;
    let err = AtlasData::from_json(duplicate).unwrap_err();
    assert!(
        err.to_string().contains("duplicate externalId \"x\""),
        "{err}"
    );

    let missing = AtlasData::from_file(dir.join("missing.json")).unwrap_err();
    assert!(matches!(missing, DataFileError::Read { .. }));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn broken_references_in_a_data_file_are_named_with_their_line() {
    let dir = std::env::temp_dir().join(format!("atlas-refs-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let text = r#"{
  "apiKey": "k",
  "merchant": {"mode": "test", "isStripeConfigured": false, "trialDurationInDays": 0},
  "pricingModel": {
    "entitlements": [{"id": "ent_a", "slug": "a"}],
    "plans": [
      {"id": "plan_one", "status": "available", "entitlements": [
        {"id": "ent_a", "included": true},
        {"id": "ent_missing", "included": true}
      ]}
    ]
  },
  "customers": [
    {"id": "cus_1", "externalId": "user_1", "activeSubscriptions": [
      {"id": "sub_1", "planId": "plan_gone", "customerId": "cus_1"}
    ]}
  ],
  "invoices": {"user_nobody": []}
}"#;
    let file = dir.join("refs.json");
    std::fs::write(&file, text).unwrap();
    let err = AtlasData::from_file(&file).unwrap_err().to_string();
    assert!(err.starts_with(&format!("{}: ", file.display())), "{err}");
    assert!(
        err.contains(r#"line 9: plan "plan_one" grants "ent_missing""#),
        "{err}"
    );
    assert!(
        err.contains(
            r#"line 15: subscription "sub_1" of customer "user_1" is to plan "plan_gone""#
        ),
        "{err}"
    );
    assert!(
        err.contains(r#"line 18: invoices lists customer "user_nobody""#),
        "{err}"
    );

    // A conformance fixture breaks references on purpose: it loads.
    let fixture = text.replacen("{\n", "{\n  \"scenario\": \"edge cases\",\n", 1);
    std::fs::write(&file, fixture).unwrap();
    assert!(AtlasData::from_file(&file).is_ok());
    std::fs::remove_dir_all(&dir).unwrap();
}
