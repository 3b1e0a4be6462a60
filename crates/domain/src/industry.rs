use crate::coded;
use crate::DomainError;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

coded!(
    /// The pilot industries of the Shenzhen plan (深市监联〔2023〕15号) that sell prepaid
    /// services.
    Industry, "industry" {
        /// 学科类校外培训 — after-school training in school subjects.
        EduSubject = "EDU_SUBJECT",
        /// 非学科类校外培训 — sports, arts, technology after-school training.
        EduNonSubject = "EDU_NON_SUBJECT",
        /// 职业技能培训.
        EduVocational = "EDU_VOCATIONAL",
        /// 餐饮.
        Catering = "CATERING",
        /// 家政服务.
        Housekeeping = "HOUSEKEEPING",
        /// 健身娱乐.
        FitnessEntertainment = "FITNESS_ENTERTAINMENT",
        /// 文化体育.
        CultureSports = "CULTURE_SPORTS",
        /// 宠物服务.
        PetServices = "PET_SERVICES",
        /// 美容美发.
        HairBeauty = "HAIR_BEAUTY",
        /// 驾驶员培训.
        DrivingSchool = "DRIVING_SCHOOL",
        /// 洗车.
        CarWash = "CAR_WASH",
    }
);

coded!(
    /// How frozen prepayments are released as the service is delivered.
    ReleaseMode, "release mode" {
        /// 一课一释: per class, visit or wash redeemed.
        PerUnit = "PER_UNIT",
        /// 一月一释: a fixed share per month of the contract term.
        PerMonth = "PER_MONTH",
    }
);

impl Industry {
    /// Chinese display name.
    pub const fn name_zh(self) -> &'static str {
        match self {
            Industry::EduSubject => "学科类校外培训",
            Industry::EduNonSubject => "非学科类校外培训",
            Industry::EduVocational => "职业技能培训",
            Industry::Catering => "餐饮",
            Industry::Housekeeping => "家政服务",
            Industry::FitnessEntertainment => "健身娱乐",
            Industry::CultureSports => "文化体育",
            Industry::PetServices => "宠物服务",
            Industry::HairBeauty => "美容美发",
            Industry::DrivingSchool => "驾驶员培训",
            Industry::CarWash => "洗车",
        }
    }

    /// English display name.
    pub const fn name_en(self) -> &'static str {
        match self {
            Industry::EduSubject => "After-school training (subject)",
            Industry::EduNonSubject => "After-school training (non-subject)",
            Industry::EduVocational => "Vocational training",
            Industry::Catering => "Catering",
            Industry::Housekeeping => "Housekeeping",
            Industry::FitnessEntertainment => "Fitness & entertainment",
            Industry::CultureSports => "Culture & sports",
            Industry::PetServices => "Pet services",
            Industry::HairBeauty => "Hair & beauty",
            Industry::DrivingSchool => "Driving school",
            Industry::CarWash => "Car washing",
        }
    }

    /// True for the after-school and vocational training industries, which fall under the
    /// education prepayment rules (教监管函〔2021〕2号).
    pub const fn is_education(self) -> bool {
        matches!(
            self,
            Industry::EduSubject | Industry::EduNonSubject | Industry::EduVocational
        )
    }

    /// Longest period a single prepayment may cover, where a rule caps it: 3 months (or 60
    /// class hours) for after-school training.
    pub const fn max_prepay_months(self) -> Option<u32> {
        match self {
            Industry::EduSubject | Industry::EduNonSubject => Some(3),
            _ => None,
        }
    }
}
