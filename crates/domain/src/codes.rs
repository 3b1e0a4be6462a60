//! Coded values of the source tables. Each code list is closed: ingestion rejects any value
//! outside it, and the codes (not Rust names) are the stable contract with data providers.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::DomainError;

/// Defines a closed list of codes: the enum, its `ALL` list, `as_str`, `FromStr`, `Display`
/// and string (de)serialisation.
#[macro_export]
macro_rules! coded {
    ($(#[$meta:meta])* $name:ident, $what:literal { $($(#[$vmeta:meta])* $variant:ident = $code:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum $name {
            $($(#[$vmeta])* $variant),+
        }

        impl $name {
            /// Every value, in the order of the published list.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];
            /// What this list is called in error messages.
            pub const WHAT: &'static str = $what;
            /// Every code, in the order of the published list.
            pub const CODES: &'static [&'static str] = &[$($code),+];

            /// The stable code, as it appears in source files.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $code),+
                }
            }
        }

        impl FromStr for $name {
            type Err = DomainError;
            fn from_str(s: &str) -> Result<Self, DomainError> {
                match s {
                    $($code => Ok($name::$variant),)+
                    _ => Err(DomainError::UnknownCode { what: $what, code: s.to_string() }),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let text = String::deserialize(d)?;
                text.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

coded!(
    /// Legal form of a merchant: a company, or an individual business (个体工商户).
    LegalForm, "legal form" { Enterprise = "ENTERPRISE", Individual = "INDIVIDUAL" }
);

coded!(
    /// How a merchant's prepayments are protected.
    CustodyMode, "custody mode" {
        /// 元管家 smart contracts freeze the whole prepayment.
        EcnyFull = "ECNY_FULL",
        /// 元管家 smart contracts freeze a share of each prepayment.
        EcnyRatio = "ECNY_RATIO",
        /// A bank custody (存管) account outside e-CNY.
        BankCustody = "BANK_CUSTODY",
        /// A risk reserve (风险保证金) deposited with a bank instead of custody: a fixed sum
        /// (the record's `guarantee_amount`) that pays consumers if the merchant does not.
        RiskReserve = "RISK_RESERVE",
        /// Performance-bond insurance (履约保证保险): an insurer pays consumers' refunds the
        /// merchant does not, up to the policy's cover (`guarantee_amount`).
        PerformanceBond = "PERFORMANCE_BOND",
        /// Not supervised.
        None = "NONE",
    }
);

coded!(
    /// What a prepaid product sells.
    ProductKind, "product kind" {
        ClassPack = "CLASS_PACK",
        TimeCard = "TIME_CARD",
        StoredValue = "STORED_VALUE",
        CountCard = "COUNT_CARD",
    }
);

coded!(
    /// What happens to an unredeemed balance when a contract expires. No published rule was
    /// found for 元管家, so it is a term of each product.
    ExpiryDisposition, "expiry disposition" {
        RefundToConsumer = "REFUND_TO_CONSUMER",
        ReleaseToMerchant = "RELEASE_TO_MERCHANT",
        Extend = "EXTEND",
    }
);

coded!(
    /// Kinds of rows in the escrow-event table.
    EscrowEventKind, "escrow event kind" {
        /// A consumer prepays; part of it (`frozen_amount`) is frozen by the smart contract.
        Prepayment = "PREPAYMENT",
        /// Services consumed (核销): `units` redeemed, worth `amount`.
        Redemption = "REDEMPTION",
        /// Frozen funds released to the merchant wallet.
        Release = "RELEASE",
        /// A merchant release request the contract refused.
        ReleaseRejected = "RELEASE_REJECTED",
        /// A consumer asks for the unredeemed balance back.
        RefundRequested = "REFUND_REQUESTED",
        /// A refund paid, with where the money came from.
        RefundCompleted = "REFUND_COMPLETED",
        /// The contract expired with `amount` unredeemed.
        Expiry = "EXPIRY",
    }
);

coded!(
    /// Through which channel a prepayment was taken.
    PrepaymentChannel, "prepayment channel" {
        EcnyYgj = "ECNY_YGJ",
        BankCustody = "BANK_CUSTODY",
        Unsupervised = "UNSUPERVISED",
    }
);

coded!(
    /// Why frozen funds were released.
    ReleaseTrigger, "release trigger" {
        PerUnit = "PER_UNIT",
        PerMonth = "PER_MONTH",
        MerchantRequestApproved = "MERCHANT_REQUEST_APPROVED",
        Expiry = "EXPIRY",
    }
);

coded!(
    /// Why a merchant's release request was refused.
    ReleaseRejectReason, "release rejection reason" {
        NotDelivered = "NOT_DELIVERED",
        ExceedsBalance = "EXCEEDS_BALANCE",
    }
);

coded!(
    /// Why a consumer asked for a refund.
    RefundReason, "refund reason" {
        ChangeOfMind = "CHANGE_OF_MIND",
        ServiceFailure = "SERVICE_FAILURE",
        MerchantClosed = "MERCHANT_CLOSED",
    }
);

coded!(
    /// Where a completed refund was paid from; `UNRECOVERED` is the consumer's loss.
    RefundSource, "refund source" {
        Escrow = "ESCROW",
        MerchantWallet = "MERCHANT_WALLET",
        /// Drawn on the merchant's risk reserve (风险保证金).
        RiskReserve = "RISK_RESERVE",
        /// Paid by the insurer of a performance bond (履约保证保险).
        Insurer = "INSURER",
        Unrecovered = "UNRECOVERED",
    }
);

coded!(
    /// Kinds of rows in the merchant-wallet table.
    WalletFlowKind, "wallet flow kind" {
        /// Non-prepaid sales of one business day, settled to the wallet.
        SpotSale = "SPOT_SALE",
        /// Money moved out of the wallet to a bank account.
        Withdrawal = "WITHDRAWAL",
    }
);

coded!(
    /// How spot sales were paid.
    SpotChannel, "spot-sale channel" { Ecny = "ECNY", Card = "CARD", Qr = "QR", Cash = "CASH" }
);

coded!(
    /// Kinds of rows in the operations table.
    OperationKind, "operation kind" {
        Payroll = "PAYROLL",
        SocialInsurance = "SOCIAL_INSURANCE",
        Utility = "UTILITY",
        /// A month's rent of the merchant's premises (all its stores).
        Rent = "RENT",
    }
);

coded!(
    /// Utility metered for a store.
    UtilityKind, "utility kind" { Electricity = "ELECTRICITY", Water = "WATER", Gas = "GAS" }
);

coded!(
    /// Where a consumer complaint was lodged.
    ComplaintChannel, "complaint channel" {
        Hotline12315 = "HOTLINE_12315",
        Hotline12345 = "HOTLINE_12345",
        ConsumerCouncil = "CONSUMER_COUNCIL",
        Platform = "PLATFORM",
    }
);

coded!(
    /// What a complaint is about.
    ComplaintCategory, "complaint category" {
        Refund = "REFUND",
        Service = "SERVICE",
        Closure = "CLOSURE",
        FalseAdvertising = "FALSE_AD",
        Price = "PRICE",
    }
);

coded!(
    /// Kinds of public records.
    PublicRecordKind, "public record kind" {
        AdminPenalty = "ADMIN_PENALTY",
        AbnormalListed = "ABNORMAL_LISTED",
        AbnormalRemoved = "ABNORMAL_REMOVED",
        LawsuitDefendant = "LAWSUIT_DEFENDANT",
        /// A court enforcement case against the merchant (被执行人), with the sum to enforce.
        Enforcement = "ENFORCEMENT",
        /// Listed as a dishonest judgment debtor (失信被执行人).
        DishonestListed = "DISHONEST_LISTED",
        /// Removed from the dishonest-debtor list (the judgment was satisfied).
        DishonestRemoved = "DISHONEST_REMOVED",
    }
);

coded!(
    /// Store lifecycle events.
    StoreEventKind, "store event kind" { Opened = "OPENED", Closed = "CLOSED" }
);

coded!(
    /// Kinds of rows in the loan table.
    LoanEventKind, "loan event kind" {
        Disbursement = "DISBURSEMENT",
        ScheduledRepayment = "SCHEDULED_REPAYMENT",
        Repayment = "REPAYMENT",
        /// Month-end status: `dpd` days past due on the loan.
        Status = "STATUS",
    }
);

coded!(
    /// Lenders of the plan's finance group.
    Lender, "lender" {
        Icbc = "ICBC", Abc = "ABC", Boc = "BOC", Ccb = "CCB", Bocom = "BOCOM",
        Psbc = "PSBC", Cmb = "CMB", Cib = "CIB", Webank = "WEBANK",
    }
);

coded!(
    /// Kinds of rows in the credit-bureau table.
    BureauRecordKind, "bureau record kind" {
        /// Month-end balance owed to creditors of one type outside the loans table.
        DebtBalance = "DEBT_BALANCE",
        /// A credit inquiry (查询记录) by an institution.
        Inquiry = "INQUIRY",
    }
);

coded!(
    /// Kinds of creditors and inquirers a credit bureau reports.
    InstitutionType, "institution type" {
        /// A bank (outside the loans table's records for debts).
        Bank = "BANK",
        /// A microlender (小额贷款公司).
        Microlender = "MICROLENDER",
        /// A financial-leasing company (equipment leases).
        Leasing = "LEASING",
        /// Supply-chain finance: factoring of receivables or supplier credit.
        Factoring = "FACTORING",
    }
);

coded!(
    /// Why an institution inquired.
    InquiryPurpose, "inquiry purpose" {
        /// Approving a loan application (a hard inquiry).
        LoanApplication = "LOAN_APPLICATION",
        /// Monitoring a loan already granted.
        PostLoan = "POST_LOAN",
        /// Checking a guarantor.
        Guarantee = "GUARANTEE",
    }
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_unknowns_are_errors() {
        for kind in EscrowEventKind::ALL {
            assert_eq!(kind.as_str().parse::<EscrowEventKind>().unwrap(), *kind);
        }
        let err = "PREPAY".parse::<EscrowEventKind>().unwrap_err();
        assert_eq!(err.to_string(), "unknown escrow event kind code \"PREPAY\"");
        assert!("prepayment".parse::<EscrowEventKind>().is_err());
    }
}
