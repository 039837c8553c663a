//! The standard objects fieldpulse touches (reference §5), with their field
//! types, create/update/nillable/defaulted properties and default picklists.
//! Only fields whose reference target the emulator knows are included.

use super::{FieldDef, FieldType, ObjectSchema, Picklist};

/// A field with no properties set; chain `cu()`, `n()`, `d()` to add them.
pub fn f(name: &str, label: &str, ty: FieldType) -> FieldDef {
    FieldDef {
        name: name.to_string(),
        label: label.to_string(),
        ty,
        createable: false,
        updateable: false,
        nillable: false,
        defaulted: false,
        external_id: false,
        unique: false,
        case_sensitive: false,
        relationship_name: None,
        default_bool: None,
    }
}

/// A read-only system field the emulator maintains.
pub fn sys(name: &str, label: &str, ty: FieldType) -> FieldDef {
    let mut field = f(name, label, ty);
    field.nillable = name != "Id";
    field.defaulted = true;
    field
}

impl FieldDef {
    /// Createable and updateable.
    pub fn cu(mut self) -> Self {
        self.createable = true;
        self.updateable = true;
        self
    }
    /// Createable only.
    pub fn c(mut self) -> Self {
        self.createable = true;
        self
    }
    /// Nillable.
    pub fn n(mut self) -> Self {
        self.nillable = true;
        self
    }
    /// Defaulted on create.
    pub fn d(mut self) -> Self {
        self.defaulted = true;
        self
    }
}

fn opt(name: &str, label: &str, ty: FieldType) -> FieldDef {
    let boolean = ty == FieldType::Boolean;
    let mut field = f(name, label, ty).cu().n();
    if boolean {
        field.nillable = false;
        field.defaulted = true;
        field.default_bool = Some(false);
    }
    field
}

fn req(name: &str, label: &str, ty: FieldType) -> FieldDef {
    f(name, label, ty).cu()
}

fn ro(name: &str, label: &str, ty: FieldType) -> FieldDef {
    f(name, label, ty).n().d()
}

fn auto(name: &str, label: &str, format: &str) -> FieldDef {
    f(name, label, FieldType::AutoNumber(format.to_string())).d()
}

fn text(n: usize) -> FieldType {
    FieldType::String(n)
}

fn area(n: usize) -> FieldType {
    FieldType::TextArea(n)
}

fn refs(to: &[&str]) -> FieldType {
    FieldType::Reference(to.iter().map(|s| s.to_string()).collect())
}

fn pick(values: &[&str], restricted: bool, default: Option<&str>) -> FieldType {
    FieldType::Picklist(Picklist {
        values: values.iter().map(|s| s.to_string()).collect(),
        restricted,
        default: default.map(str::to_string),
        closed: Vec::new(),
    })
}

/// Case `Status` with the default values; `Closed` closes the Case.
fn case_status() -> FieldDef {
    let mut field = picked(
        "Status",
        "Status",
        &["New", "Working", "Escalated", "Closed"],
        false,
        "New",
    );
    if let FieldType::Picklist(p) = &mut field.ty {
        p.closed = vec!["Closed".into()];
    }
    field
}

fn picked(name: &str, label: &str, values: &[&str], restricted: bool, default: &str) -> FieldDef {
    f(name, label, pick(values, restricted, Some(default)))
        .cu()
        .n()
        .d()
}

const WO_STATUS: &[&str] = &[
    "New",
    "In Progress",
    "On Hold",
    "Completed",
    "Cannot Complete",
    "Closed",
    "Canceled",
];
const WO_PRIORITY: &[&str] = &["Low", "Medium", "High", "Critical"];
const DURATION_TYPE: &[&str] = &["Minutes", "Hours"];
const PERIOD: &[&str] = &["Days", "Weeks", "Months", "Years"];

/// Work Order statuses that close a Work Order (`IsClosed`).
pub const CLOSED_WO_STATUSES: &[&str] = &["Completed", "Cannot Complete", "Closed", "Canceled"];

fn status_category() -> FieldDef {
    ro(
        "StatusCategory",
        "Status Category",
        pick(
            &[
                "None",
                "New",
                "InProgress",
                "OnHold",
                "Completed",
                "CannotComplete",
                "Closed",
                "Canceled",
            ],
            true,
            None,
        ),
    )
}

/// Every standard object the emulator serves.
pub fn objects() -> Vec<ObjectSchema> {
    let mut user = ObjectSchema::new(
        "User",
        "User",
        "005",
        vec![
            req("Username", "Username", text(80)),
            req("LastName", "Last Name", text(80)),
            opt("FirstName", "First Name", text(40)),
            opt("Email", "Email", FieldType::Email),
            opt("IsActive", "Active", FieldType::Boolean),
        ],
        false,
    );
    user.deletable = false;
    vec![
        user,
        ObjectSchema::new(
            "Account",
            "Account",
            "001",
            vec![
                req("Name", "Account Name", text(255)),
                opt(
                    "Type",
                    "Account Type",
                    pick(
                        &[
                            "Prospect",
                            "Customer - Direct",
                            "Customer - Channel",
                            "Channel Partner / Reseller",
                            "Installation Partner",
                            "Technology Partner",
                            "Other",
                        ],
                        false,
                        None,
                    ),
                ),
                opt(
                    "Industry",
                    "Industry",
                    pick(
                        &[
                            "Manufacturing",
                            "Energy",
                            "Utilities",
                            "Transportation",
                            "Other",
                        ],
                        false,
                        None,
                    ),
                ),
                opt("ParentId", "Parent Account ID", refs(&["Account"])),
                opt("BillingStreet", "Billing Street", area(255)),
                opt("BillingCity", "Billing City", text(40)),
                opt("BillingState", "Billing State/Province", text(80)),
                opt("BillingPostalCode", "Billing Zip/Postal Code", text(20)),
                opt("BillingCountry", "Billing Country", text(80)),
                opt("Phone", "Account Phone", FieldType::Phone),
                opt("Description", "Account Description", area(32_000)),
            ],
            true,
        ),
        ObjectSchema::new(
            "Contact",
            "Contact",
            "003",
            vec![
                req("LastName", "Last Name", text(80)),
                opt("FirstName", "First Name", text(40)),
                opt("Email", "Email", FieldType::Email),
                opt("Phone", "Business Phone", FieldType::Phone),
                opt("MobilePhone", "Mobile Phone", FieldType::Phone),
                opt("Title", "Title", text(128)),
                opt("AccountId", "Account ID", refs(&["Account"])),
            ],
            true,
        ),
        ObjectSchema::new(
            "Product2",
            "Product",
            "01t",
            vec![
                req("Name", "Product Name", text(255)),
                opt("ProductCode", "Product Code", text(255)),
                opt("StockKeepingUnit", "Product SKU", text(180)),
                opt("Family", "Product Family", pick(&["None"], false, None)),
                opt("IsActive", "Active", FieldType::Boolean),
                opt(
                    "QuantityUnitOfMeasure",
                    "Quantity Unit Of Measure",
                    pick(&["Each"], false, None),
                ),
                opt("Description", "Product Description", area(4000)),
            ],
            false,
        ),
        ObjectSchema::new(
            "Asset",
            "Asset",
            "02i",
            vec![
                req("Name", "Asset Name", text(255)),
                opt("AccountId", "Account ID", refs(&["Account"])),
                opt("ContactId", "Contact ID", refs(&["Contact"])),
                opt("Product2Id", "Product ID", refs(&["Product2"])),
                opt("SerialNumber", "Serial Number", text(80)),
                opt("InstallDate", "Install Date", FieldType::Date),
                opt("PurchaseDate", "Purchase Date", FieldType::Date),
                opt("UsageEndDate", "Usage End Date", FieldType::Date),
                opt(
                    "Status",
                    "Status",
                    pick(
                        &[
                            "Purchased",
                            "Shipped",
                            "Installed",
                            "Registered",
                            "Obsolete",
                        ],
                        false,
                        None,
                    ),
                ),
                opt("ParentId", "Parent Asset ID", refs(&["Asset"])),
                ro("RootAssetId", "Root Asset ID", refs(&["Asset"])),
                ro("AssetLevel", "Asset Level", FieldType::Int),
                opt("Quantity", "Quantity", FieldType::Double(18, 2)),
                opt("Price", "Price", FieldType::Currency(18, 2)),
                opt(
                    "AssetProvidedById",
                    "Asset Provided By ID",
                    refs(&["Account"]),
                ),
                opt(
                    "AssetServicedById",
                    "Asset Serviced By ID",
                    refs(&["Account"]),
                ),
                opt(
                    "IsCompetitorProduct",
                    "Competitor Asset",
                    FieldType::Boolean,
                ),
                opt("IsInternal", "Internal Asset", FieldType::Boolean),
                opt("Description", "Description", area(32_000)),
            ],
            true,
        ),
        ObjectSchema::new(
            "Case",
            "Case",
            "500",
            vec![
                auto("CaseNumber", "Case Number", "{00000000}"),
                opt("Subject", "Subject", text(255)),
                opt("Description", "Description", area(32_000)),
                case_status(),
                opt(
                    "Origin",
                    "Case Origin",
                    pick(&["Phone", "Email", "Web"], false, None),
                ),
                picked(
                    "Priority",
                    "Priority",
                    &["High", "Medium", "Low"],
                    false,
                    "Medium",
                ),
                opt(
                    "Type",
                    "Case Type",
                    pick(
                        &[
                            "Mechanical",
                            "Electrical",
                            "Electronic",
                            "Structural",
                            "Other",
                        ],
                        false,
                        None,
                    ),
                ),
                opt(
                    "Reason",
                    "Case Reason",
                    pick(
                        &[
                            "Installation",
                            "Equipment Complexity",
                            "Performance",
                            "Breakdown",
                            "Equipment Design",
                            "Feedback",
                            "Other",
                        ],
                        false,
                        None,
                    ),
                ),
                opt("AssetId", "Asset ID", refs(&["Asset"])),
                opt("AccountId", "Account ID", refs(&["Account"])),
                opt("ContactId", "Contact ID", refs(&["Contact"])),
                opt("ProductId", "Product ID", refs(&["Product2"])),
                opt("ParentId", "Parent Case ID", refs(&["Case"])),
                ro("IsClosed", "Closed", FieldType::Boolean),
                ro("ClosedDate", "Closed Date", FieldType::DateTime),
                opt("IsEscalated", "Escalated", FieldType::Boolean),
                opt("SuppliedName", "Web Name", text(80)),
                opt("SuppliedEmail", "Web Email", FieldType::Email),
                opt("SuppliedPhone", "Web Phone", text(40)),
                opt("SuppliedCompany", "Web Company", text(80)),
            ],
            true,
        ),
        ObjectSchema::new(
            "WorkType",
            "Work Type",
            "08q",
            vec![
                req("Name", "Work Type Name", text(255)),
                req(
                    "EstimatedDuration",
                    "Estimated Duration",
                    FieldType::Double(16, 2),
                ),
                picked(
                    "DurationType",
                    "Duration Type",
                    DURATION_TYPE,
                    true,
                    "Hours",
                ),
                opt("Description", "Description", area(32_000)),
                opt(
                    "ShouldAutoCreateSvcAppt",
                    "Auto-Create Service Appointment",
                    FieldType::Boolean,
                ),
                opt("MinimumCrewSize", "Minimum Crew Size", FieldType::Int),
                opt(
                    "RecommendedCrewSize",
                    "Recommended Crew Size",
                    FieldType::Int,
                ),
            ],
            true,
        ),
        ObjectSchema::new(
            "WorkOrder",
            "Work Order",
            "0WO",
            vec![
                auto("WorkOrderNumber", "Work Order Number", "{00000000}"),
                picked("Status", "Status", WO_STATUS, false, "New"),
                status_category(),
                opt("Priority", "Priority", pick(WO_PRIORITY, false, None)),
                opt("Subject", "Subject", text(255)),
                opt("Description", "Description", area(32_000)),
                opt("AssetId", "Asset ID", refs(&["Asset"])),
                opt("CaseId", "Case ID", refs(&["Case"])),
                opt("AccountId", "Account ID", refs(&["Account"])),
                opt("ContactId", "Contact ID", refs(&["Contact"])),
                opt("WorkTypeId", "Work Type ID", refs(&["WorkType"])),
                opt(
                    "MaintenancePlanId",
                    "Maintenance Plan ID",
                    refs(&["MaintenancePlan"]),
                ),
                ro(
                    "IsGeneratedFromMaintenancePlan",
                    "Generated from Maintenance Plan",
                    FieldType::Boolean,
                ),
                opt(
                    "SuggestedMaintenanceDate",
                    "Suggested Maintenance Date",
                    FieldType::Date,
                ),
                opt("StartDate", "Start Date", FieldType::DateTime),
                opt("EndDate", "End Date", FieldType::DateTime),
                opt("Duration", "Duration", FieldType::Double(16, 2)),
                picked(
                    "DurationType",
                    "Duration Type",
                    DURATION_TYPE,
                    false,
                    "Hours",
                ),
                ro("IsClosed", "Closed", FieldType::Boolean),
                opt(
                    "ParentWorkOrderId",
                    "Parent Work Order ID",
                    refs(&["WorkOrder"]),
                ),
                ro(
                    "RootWorkOrderId",
                    "Root Work Order ID",
                    refs(&["WorkOrder"]),
                ),
                ro("LineItemCount", "Line Items", FieldType::Int),
                opt("Street", "Street", area(255)),
                opt("City", "City", text(40)),
                opt("State", "State", text(80)),
                opt("PostalCode", "Zip/Postal Code", text(20)),
                opt("Country", "Country", text(80)),
                opt("PostWorkSummary", "Post-Work Summary", area(32_000)),
            ],
            true,
        ),
        ObjectSchema::new(
            "WorkOrderLineItem",
            "Work Order Line Item",
            "1WL",
            vec![
                f("WorkOrderId", "Work Order ID", refs(&["WorkOrder"])).c(),
                auto("LineItemNumber", "Line Item Number", "{00000}"),
                picked("Status", "Status", WO_STATUS, false, "New"),
                status_category(),
                ro("IsClosed", "Closed", FieldType::Boolean),
                opt("Priority", "Priority", pick(WO_PRIORITY, false, None)),
                opt("AssetId", "Asset ID", refs(&["Asset"])),
                opt("WorkTypeId", "Work Type ID", refs(&["WorkType"])),
                opt("Subject", "Subject", text(255)),
                opt("Description", "Description", area(32_000)),
                opt("StartDate", "Start Date", FieldType::DateTime),
                opt("EndDate", "End Date", FieldType::DateTime),
                opt("Duration", "Duration", FieldType::Double(16, 2)),
                picked(
                    "DurationType",
                    "Duration Type",
                    DURATION_TYPE,
                    false,
                    "Hours",
                ),
                opt("Quantity", "Quantity", FieldType::Double(16, 2)),
                opt("UnitPrice", "Unit Price", FieldType::Currency(16, 2)),
                ro("Product2Id", "Product ID", refs(&["Product2"])),
                opt(
                    "MaintenancePlanId",
                    "Maintenance Plan ID",
                    refs(&["MaintenancePlan"]),
                ),
            ],
            false,
        ),
        ObjectSchema::new(
            "MaintenancePlan",
            "Maintenance Plan",
            "1MP",
            vec![
                auto(
                    "MaintenancePlanNumber",
                    "Maintenance Plan Number",
                    "{00000000}",
                ),
                opt("MaintenancePlanTitle", "Maintenance Plan Title", text(255)),
                req("StartDate", "Start Date", FieldType::Date),
                opt("EndDate", "End Date", FieldType::Date),
                req(
                    "NextSuggestedMaintenanceDate",
                    "Date of the first work order in the next batch",
                    FieldType::Date,
                ),
                // Not nillable, yet optional since work rules exist (reference §5.1).
                opt("Frequency", "Frequency", FieldType::Int),
                picked("FrequencyType", "Frequency Type", PERIOD, true, "Months"),
                req(
                    "GenerationTimeframe",
                    "Generation Timeframe",
                    FieldType::Int,
                ),
                f(
                    "GenerationTimeframeType",
                    "Generation Timeframe Type",
                    pick(PERIOD, true, None),
                )
                .cu(),
                opt("GenerationHorizon", "Generation Horizon", FieldType::Int),
                opt(
                    "DoesAutoGenerateWorkOrders",
                    "Auto-Generate Work Orders",
                    FieldType::Boolean,
                ),
                opt(
                    "DoesGenerateUponCompletion",
                    "Generate New Batch Upon Completion",
                    FieldType::Boolean,
                ),
                opt("WorkTypeId", "Work Type ID", refs(&["WorkType"])),
                opt("AccountId", "Account ID", refs(&["Account"])),
                opt("ContactId", "Contact ID", refs(&["Contact"])),
                opt(
                    "MaintenanceWindowStartDays",
                    "Maintenance Window Start",
                    FieldType::Int,
                ),
                opt(
                    "MaintenanceWindowEndDays",
                    "Maintenance Window End",
                    FieldType::Int,
                ),
                picked(
                    "WorkOrderGenerationMethod",
                    "Work Order Generation Method",
                    &["WorkOrderPerAsset", "WorkOrderLineItemPerAsset"],
                    true,
                    "WorkOrderPerAsset",
                ),
                opt(
                    "SvcApptGenerationMethod",
                    "Service Appointment Generation Method",
                    pick(
                        &["SvcApptPerWorkOrder", "SvcApptPerWorkOrderLineItem"],
                        true,
                        None,
                    ),
                ),
                ro(
                    "WorkOrderGenerationStatus",
                    "Work Order Generation Status",
                    pick(
                        &["NotStarted", "InProgress", "Completed", "Unsuccessful"],
                        true,
                        None,
                    ),
                ),
                opt("Description", "Description", area(32_000)),
            ],
            true,
        ),
        ObjectSchema::new(
            "MaintenanceAsset",
            "Maintenance Asset",
            "1MA",
            vec![
                f(
                    "MaintenancePlanId",
                    "Maintenance Plan ID",
                    refs(&["MaintenancePlan"]),
                )
                .c(),
                req("AssetId", "Asset ID", refs(&["Asset"])),
                opt(
                    "NextSuggestedMaintenanceDate",
                    "Next Suggested Maintenance Date",
                    FieldType::Date,
                ),
                opt("WorkTypeId", "Work Type ID", refs(&["WorkType"])),
                auto(
                    "MaintenanceAssetNumber",
                    "Maintenance Asset Number",
                    "{00000000}",
                ),
            ],
            false,
        ),
        ObjectSchema::new(
            "ServiceAppointment",
            "Service Appointment",
            "08p",
            vec![
                f(
                    "ParentRecordId",
                    "Parent Record ID",
                    refs(&[
                        "Account",
                        "Asset",
                        "Opportunity",
                        "WorkOrder",
                        "WorkOrderLineItem",
                    ]),
                )
                .c(),
                ro("ParentRecordType", "Parent Record Type", text(50)),
                auto("AppointmentNumber", "Appointment Number", "SA-{0000}"),
                picked(
                    "Status",
                    "Status",
                    &[
                        "None",
                        "Scheduled",
                        "Dispatched",
                        "In Progress",
                        "Completed",
                        "Cannot Complete",
                        "Canceled",
                    ],
                    true,
                    "None",
                ),
                req(
                    "EarliestStartTime",
                    "Earliest Start Permitted",
                    FieldType::DateTime,
                ),
                req("DueDate", "Due Date", FieldType::DateTime),
                opt("SchedStartTime", "Scheduled Start", FieldType::DateTime),
                opt("SchedEndTime", "Scheduled End", FieldType::DateTime),
                opt(
                    "ArrivalWindowStartTime",
                    "Arrival Window Start",
                    FieldType::DateTime,
                ),
                opt(
                    "ArrivalWindowEndTime",
                    "Arrival Window End",
                    FieldType::DateTime,
                ),
                opt("ActualStartTime", "Actual Start", FieldType::DateTime),
                opt("ActualEndTime", "Actual End", FieldType::DateTime),
                opt(
                    "ActualDuration",
                    "Actual Duration (Minutes)",
                    FieldType::Double(16, 2),
                ),
                opt("Duration", "Estimated Duration", FieldType::Double(16, 2)),
                picked(
                    "DurationType",
                    "Duration Type",
                    DURATION_TYPE,
                    false,
                    "Hours",
                ),
                opt("WorkTypeId", "Work Type ID", refs(&["WorkType"])),
                ro("AccountId", "Account ID", refs(&["Account"])),
                opt("ContactId", "Contact ID", refs(&["Contact"])),
                opt("Subject", "Subject", text(255)),
                opt("Description", "Description", area(32_000)),
            ],
            true,
        ),
        ObjectSchema::new(
            "Opportunity",
            "Opportunity",
            "006",
            vec![
                req("Name", "Name", text(120)),
                f(
                    "StageName",
                    "Stage",
                    pick(
                        &[
                            "Prospecting",
                            "Qualification",
                            "Needs Analysis",
                            "Value Proposition",
                            "Id. Decision Makers",
                            "Perception Analysis",
                            "Proposal/Price Quote",
                            "Negotiation/Review",
                            "Closed Won",
                            "Closed Lost",
                        ],
                        true,
                        None,
                    ),
                )
                .cu(),
                req("CloseDate", "Close Date", FieldType::Date),
                opt("AccountId", "Account ID", refs(&["Account"])),
                opt("Amount", "Amount", FieldType::Currency(18, 2)),
                f("Probability", "Probability (%)", FieldType::Percent(3, 0))
                    .cu()
                    .n()
                    .d(),
                opt("Description", "Description", area(32_000)),
                opt(
                    "Type",
                    "Opportunity Type",
                    pick(
                        &[
                            "Existing Customer - Upgrade",
                            "Existing Customer - Replacement",
                            "Existing Customer - Downgrade",
                            "New Customer",
                        ],
                        false,
                        None,
                    ),
                ),
                opt(
                    "LeadSource",
                    "Lead Source",
                    pick(
                        &[
                            "Web",
                            "Phone Inquiry",
                            "Partner Referral",
                            "Purchased List",
                            "Other",
                        ],
                        false,
                        None,
                    ),
                ),
            ],
            true,
        ),
    ]
}
