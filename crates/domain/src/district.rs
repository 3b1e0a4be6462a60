use crate::coded;
use crate::DomainError;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

coded!(
    /// Shenzhen's districts, including the two functional areas 大鹏新区 and 深汕特别合作区.
    District, "district" {
        Futian = "FUTIAN",
        Luohu = "LUOHU",
        Nanshan = "NANSHAN",
        Yantian = "YANTIAN",
        Baoan = "BAOAN",
        Longgang = "LONGGANG",
        Longhua = "LONGHUA",
        Pingshan = "PINGSHAN",
        Guangming = "GUANGMING",
        Dapeng = "DAPENG",
        ShenShan = "SHENSHAN",
    }
);

impl District {
    /// Chinese name.
    pub const fn name_zh(self) -> &'static str {
        match self {
            District::Futian => "福田区",
            District::Luohu => "罗湖区",
            District::Nanshan => "南山区",
            District::Yantian => "盐田区",
            District::Baoan => "宝安区",
            District::Longgang => "龙岗区",
            District::Longhua => "龙华区",
            District::Pingshan => "坪山区",
            District::Guangming => "光明区",
            District::Dapeng => "大鹏新区",
            District::ShenShan => "深汕特别合作区",
        }
    }

    /// The administrative division code used in credit codes registered there. The two
    /// functional areas have no county-level code of their own: registrations there carry
    /// the city code 440300.
    pub const fn division_code(self) -> &'static str {
        match self {
            District::Futian => "440304",
            District::Luohu => "440303",
            District::Nanshan => "440305",
            District::Yantian => "440308",
            District::Baoan => "440306",
            District::Longgang => "440307",
            District::Longhua => "440309",
            District::Pingshan => "440310",
            District::Guangming => "440311",
            District::Dapeng | District::ShenShan => "440300",
        }
    }
}
